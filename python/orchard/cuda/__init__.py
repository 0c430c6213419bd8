"""orchard.cuda: what PyTorch scripts ask of torch.cuda, answered for a library without CUDA devices.

Scripts written for PyTorch probe CUDA even when they run on the CPU (`'cuda' if torch.cuda.is_available()
else 'cpu'`, `torch.cuda.manual_seed_all(seed)`); Orchard has no CUDA device, so the probes say so and the
housekeeping calls have nothing to do.
"""

from .. import _core

__all__ = ["device_count", "empty_cache", "is_available", "is_bf16_supported", "is_initialized", "manual_seed",
           "manual_seed_all", "synchronize"]


def is_available():
    """Whether device="cuda" works: an NVIDIA GPU, its driver and NVRTC (issue 20: the CUDA device is being
    built; this build serves it only where those are present)."""
    return _core._cuda_is_available()


def is_initialized():
    return False


def device_count():
    return 0


def is_bf16_supported(including_emulation=True):
    """False, as there is no CUDA device to support it."""
    del including_emulation
    return False


def manual_seed(seed):
    """Nothing to seed: there are no CUDA generators. orchard.manual_seed seeds every Orchard device."""
    int(seed)  # PyTorch accepts anything int() takes; the same mistakes raise here


def manual_seed_all(seed):
    manual_seed(seed)


def synchronize(device=None):
    """Nothing to wait for: no CUDA work is ever queued."""
    del device


def empty_cache():
    """Nothing to release: no CUDA memory is ever cached."""


from . import amp  # noqa: E402  (torch.cuda.amp.GradScaler, as older scripts spell it)
