"""One small adapter per framework: import it, turn NumPy inputs into its tensors, wait for its
results, name the device its kernels ran on, and read results back for the correctness check.
Each adapter is made for the run's --device: Orchard's and PyTorch's inputs go to "cuda" on a CUDA run."""
import contextlib
import importlib

import numpy as np


def _require(probe, available, needs):
    if not available:
        raise SystemExit(f"--device cuda: {probe} is False on this machine (it needs {needs})")


def _first(out, cls):
    """The first instance of `cls` in an output that may be a tensor, a tuple/list or a dict."""
    if isinstance(out, cls):
        return out
    items = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    for item in items:
        found = _first(item, cls)
        if found is not None:
            return found
    return None


class Framework:
    name = ""
    module_name = ""

    def __init__(self, device="cpu"):
        """`device` is the run's --device; the frameworks that have no such device ignore it."""
        self.mod = importlib.import_module(self.module_name)
        self.version = getattr(self.mod, "__version__", "?")

    def convert(self, x):
        return x

    def convert_inputs(self, inputs):
        """A workload's inputs with every NumPy array converted; other values pass through."""
        return {k: self.convert(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}

    def sync(self, out):
        pass

    def device(self, out):
        return "cpu"

    def to_numpy(self, out):
        return np.asarray(out)

    def context(self):
        """Entered around setup and timing of every workload."""
        return contextlib.nullcontext()


class NumPy(Framework):
    name = module_name = "numpy"


class Orchard(Framework):
    name = module_name = "orchard"

    def __init__(self, device="cpu"):
        super().__init__()
        self.on = device  # inputs go to this device; workloads build their models where the inputs are
        if device == "cuda":
            _require("orchard.cuda.is_available()", self.mod.cuda.is_available(),
                     "an NVIDIA GPU, its driver, NVRTC and cuBLAS: pip install orchard[cuda]")

    def convert(self, x):
        return self.mod.from_numpy(x).clone().to(self.on)  # Orchard-owned memory, as oc.randn would give

    def sync(self, out):
        t = _first(out, self.mod.Tensor)
        self.mod.synchronize(t.device if t is not None else "cpu")

    def device(self, out):
        t = _first(out, self.mod.Tensor)
        kind = t.device.type if t is not None else "cpu"
        metal = getattr(self.mod, "metal", None)
        if kind == "metal" and metal is not None and metal.is_emulated():
            return "metal (emulated)"
        return kind

    def to_numpy(self, out):
        t = _first(out, self.mod.Tensor).cpu()
        return (t.float() if t.dtype == self.mod.bfloat16 else t).numpy()  # NumPy has no bfloat16


class Torch(Framework):
    name = module_name = "torch"

    def __init__(self, device="cpu"):
        super().__init__()
        self.on = "cuda" if device == "cuda" else "cpu"  # the same GPU as Orchard's; else the CPU (Metal runs too)
        if self.on == "cuda":
            _require("torch.cuda.is_available()", self.mod.cuda.is_available(), "an NVIDIA GPU and a CUDA build of PyTorch")

    def convert(self, x):
        return self.mod.from_numpy(x).clone().to(self.on)  # torch-owned memory, as torch.randn would give

    def sync(self, out):
        t = _first(out, self.mod.Tensor)
        if t is not None and t.device.type == "cuda":
            self.mod.cuda.synchronize()
        elif t is not None and t.device.type == "mps":
            self.mod.mps.synchronize()

    def device(self, out):
        t = _first(out, self.mod.Tensor)
        return t.device.type if t is not None else "cpu"

    def to_numpy(self, out):
        t = _first(out, self.mod.Tensor).detach().cpu()
        return (t.float() if t.dtype == self.mod.bfloat16 else t).numpy()  # NumPy has no bfloat16

    def context(self):
        return self.mod.inference_mode()


class TorchCompile(Torch):
    """PyTorch with the workload's model or function compiled by torch.compile (Workload.torch_compile)."""
    name = "torch.compile"


class MLX(Framework):
    name = "mlx"
    module_name = "mlx.core"

    def __init__(self, device="cpu"):
        super().__init__(device)
        if self.version == "?":
            self.version = getattr(importlib.import_module("mlx"), "__version__", "?")

    def convert(self, x):
        return self.mod.array(x)

    def sync(self, out):
        self.mod.eval(out)  # MLX is lazy: nothing runs until eval

    def device(self, out):
        return self.mod.default_device().type.name  # "gpu" or "cpu"

    def to_numpy(self, out):
        return np.array(_first(out, self.mod.array))


ADAPTERS = {cls.name: cls for cls in (Orchard, NumPy, Torch, TorchCompile, MLX)}


def load(names, device="cpu"):
    """Adapters for the frameworks in `names` that import, for a run on `device` (--device); the rest are
    reported and skipped. On "cuda", Orchard and PyTorch exit with a message where they see no GPU."""
    loaded, missing = {}, {}
    for name in names:
        try:
            loaded[name] = ADAPTERS[name](device)
        except ImportError as e:
            missing[name] = str(e)
    return loaded, missing
