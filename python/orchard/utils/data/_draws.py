"""The random draws of the samplers and the data loader, all from Orchard's generator, so that
orchard.manual_seed makes shuffling and sampling repeatable."""
from ... import _core


def check_generator(generator, owner):
    """Orchard has one generator; PyTorch's per-call generators have no counterpart yet."""
    if generator is not None:
        raise ValueError(f"{owner}: generator must be None: Orchard draws from its one generator, seeded by "
                         "orchard.manual_seed")


def permutation(n):
    """A random permutation of range(n), as an int64 NumPy array."""
    return _core.randperm(n).numpy()


def integers(high, count):
    """`count` random ints in [0, high), as an int64 NumPy array."""
    return _core.randint(high, (count,)).numpy()
