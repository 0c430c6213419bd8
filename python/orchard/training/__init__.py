"""Pieces of the `python -m orchard.train` script: corpus, checkpoints, progress line, loss plot."""
