"""The random draws of the samplers and the data loader, all from Orchard's generator, so that
orchard.manual_seed makes shuffling and sampling repeatable."""
import numpy as np

from ... import _core


def check_generator(generator, owner):
    """Orchard has one generator; PyTorch's per-call generators have no counterpart yet."""
    if generator is not None:
        raise ValueError(f"{owner}: generator must be None: Orchard draws from its one generator, seeded by "
                         "orchard.manual_seed")


def permutation(n):
    """A random permutation of range(n), as an int64 NumPy array."""
    # Ranks of uniform draws. The draws carry about 32 random bits, so among n of them about n**2 / 2**33 pairs tie
    # and keep their index order: a negligible bias for datasets of millions of samples.
    return np.argsort(_core.rand(n, dtype=_core.dtype.float64).numpy(), kind="stable")


def integers(high, count):
    """`count` random ints in [0, high), as an int64 NumPy array (from about 32 random bits each: fine for indices
    of data sets and seeds, not for cryptography)."""
    scaled = np.floor(_core.rand(count, dtype=_core.dtype.float64).numpy() * high)
    return np.minimum(scaled, high - 1).astype(np.int64)
