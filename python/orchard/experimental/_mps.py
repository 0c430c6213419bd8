"""The PyTorch bridge's route for tensors on torch's `mps` device: Orchard's Metal runtime.

PyTorch keeps MPS tensors in private storage, which the CPU cannot read and Orchard's kernels (which
use shared storage) cannot bind, so each input is materialised once into a new Orchard Metal tensor:
Orchard exports its shared-storage memory through DLPack as CPU memory and torch copies the MPS
tensor straight into it. Results travel back the same way, one copy each. Not run on Linux (no MPS);
tests/py/test_torch_bridge.py exercises it there with CPU tensors standing in for MPS ones.
"""
import torch

import orchard as oc


def require_metal():
    if not oc.metal.is_available():
        raise RuntimeError("orchard.experimental.torch: tensors on 'mps' run on Orchard's Metal runtime, which this "
                           "build or machine does not provide (orchard.metal.is_available() is False); move them to "
                           "the CPU with .cpu()")


def to_orchard(t):
    """A new Orchard Metal tensor holding the values of torch tensor t."""
    out = oc.empty(*t.shape, dtype=getattr(oc, str(t.dtype).removeprefix("torch.")), device="metal")
    torch.from_dlpack(out).copy_(t)
    return out


def to_torch(x, device):
    """A new torch tensor on `device` holding the values of Orchard Metal tensor x."""
    return torch.from_dlpack(x).to(device, copy=True)
