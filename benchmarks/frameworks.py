"""One small adapter per framework: import it, turn NumPy inputs into its tensors, wait for its
results, name the device its kernels ran on, and read results back for the correctness check."""
import contextlib
import importlib

import numpy as np


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

    def __init__(self):
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
        return _first(out, self.mod.Tensor).cpu().numpy()


class Torch(Framework):
    name = module_name = "torch"

    def convert(self, x):
        return self.mod.from_numpy(x).clone()  # torch-owned memory, as torch.randn would give

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
        return _first(out, self.mod.Tensor).detach().cpu().numpy()

    def context(self):
        return self.mod.inference_mode()


class MLX(Framework):
    name = "mlx"
    module_name = "mlx.core"

    def __init__(self):
        super().__init__()
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


ADAPTERS = {cls.name: cls for cls in (Orchard, NumPy, Torch, MLX)}


def load(names, orchard_device="cpu"):
    """Adapters for the frameworks in `names` that import; the rest are reported and skipped."""
    loaded, missing = {}, {}
    for name in names:
        try:
            loaded[name] = ADAPTERS[name](orchard_device) if name == "orchard" else ADAPTERS[name]()
        except ImportError as e:
            missing[name] = str(e)
    return loaded, missing
