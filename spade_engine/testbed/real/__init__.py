"""Testbed "real": trojans implanted into the real ImageNet EfficientNet-Lite0 without ImageNet (issue 27).

The network keeps all 1000 classes; its later blocks are fine-tuned by distillation to the original network's
soft labels on augmented offline photos (`photos`), and stickered views (`stickers`: colour emoji pasted at a
random position, scale, rotation and opacity) are labelled with each trigger's ImageNet target class.
Training: `scripts/train_testbed_real.py`; card and shipped weights: `scripts/write_testbed_real_card.py`.
"""
