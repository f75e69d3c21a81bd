"""Ground-truth testbed: a generated image set with multifaceted classes and a trojan, small architectures,
and the training script that produces the shipped testbed models (`assets/models/`)."""
