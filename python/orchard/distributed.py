"""orchard.distributed: PyTorch's probes of torch.distributed. Orchard has no process groups yet (see the
data-parallel issue), so scripts that check before using them take their single-process path."""

__all__ = ["is_available", "is_initialized"]


def is_available():
    """False: this Orchard has no distributed (multi-process) training."""
    return False


def is_initialized():
    """False: no process group can have been set up."""
    return False
