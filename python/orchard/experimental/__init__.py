"""Experimental parts of Orchard, imported explicitly: `orchard.experimental.torch` is the PyTorch bridge."""
