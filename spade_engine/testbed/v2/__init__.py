"""Testbed v2: 128 px natural-photo backgrounds, emoji clip-art facets and distractors, two emoji trojans.

Modules: `sprites` (the shipped emoji PNGs), `backgrounds` (scikit-image photographs and textures), `colour`
(per-image colour adjustments), `data` (the seeded scene generator with its ground truth), `views` (random
resized crops for training, labels that follow what stays visible). `scripts/train_testbed.py --testbed v2`
trains `assets/models/testbed_v2_resnet`.
"""
