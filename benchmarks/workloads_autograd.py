"""Autograd workloads: one SGD training step of an MLP, the same model in every framework.

3 layers (Linear -> ReLU -> Linear -> ReLU -> Linear), float32, mean-squared loss, SGD without
momentum: forward, backward into every weight and bias, `p -= lr * p.grad` without recording, grads
zeroed. Every call is one step (unit: steps/s) and returns that step's loss; the first step of each
framework starts from the same weights, so the first losses are compared. NumPy runs the same step
with a hand-written backward (the reference for the check, and the lower bound of what the math
costs without any autograd machinery).
"""
import numpy as np

from registry import Workload, register

LR = 1e-3


def _init(batch, width, layers, seed=0):
    rng = np.random.default_rng(seed)
    scale = np.float32(1.0 / np.sqrt(width))
    arrays = dict(x=rng.standard_normal((batch, width), dtype=np.float32),
                  y=rng.standard_normal((batch, width), dtype=np.float32))
    for i in range(layers):
        arrays[f"w{i}"] = rng.uniform(-1, 1, (width, width)).astype(np.float32) * scale
        arrays[f"b{i}"] = rng.uniform(-1, 1, width).astype(np.float32) * scale
    return arrays


def _params(inputs):
    layers = sum(1 for k in inputs if k.startswith("w"))
    return [inputs[f"w{i}"] for i in range(layers)], [inputs[f"b{i}"] for i in range(layers)]


@register
class MLPTrainStep(Workload):
    name = "mlp_train"
    unit = "steps/s"
    target = ("torch", 1.0)
    check = (1e-4, 1e-5)  # the first step's loss
    sizes = {"full": dict(batch=256, width=1024, layers=3), "quick": dict(batch=16, width=64, layers=3)}

    def label(self, batch, width, layers):
        return f"MLP {layers}x{width}, batch {batch}, SGD step"

    def work(self, batch, width, layers):
        return 1.0  # one step per call

    def inputs(self, batch, width, layers):
        return _init(batch, width, layers)

    def numpy(self, x, y, **params):
        ws, bs = _params(params)
        ws, bs = [w.copy() for w in ws], [b.copy() for b in bs]  # the inputs are shared: never update them
        n = len(ws)

        def step():
            hs, masks = [x], []
            h = x
            for i in range(n):
                h = h @ ws[i] + bs[i]
                if i < n - 1:
                    masks.append(h > 0)
                    h = h * masks[-1]
                hs.append(h)
            diff = h - y
            loss = np.mean(diff * diff)
            g = diff * np.float32(2.0 / diff.size)
            for i in reversed(range(n)):
                gw, gb = hs[i].T @ g, g.sum(0)
                if i > 0:
                    g = (g @ ws[i].T) * masks[i - 1]
                ws[i] -= np.float32(LR) * gw
                bs[i] -= np.float32(LR) * gb
            return np.float32(loss)
        return step

    def orchard(self, x, y, **params):
        import orchard as oc
        ws, bs = _params(params)
        ws = [w.requires_grad_() for w in ws]
        bs = [b.requires_grad_() for b in bs]
        return lambda: _sgd_step(x, y, ws, bs, oc.no_grad)

    def torch(self, x, y, **params):
        import torch
        ws, bs = _params(params)
        # The runner times PyTorch under inference_mode: train outside it, on ordinary tensors.
        with torch.inference_mode(False):
            ws = [w.clone().requires_grad_() for w in ws]
            bs = [b.clone().requires_grad_() for b in bs]
            x, y = x.clone(), y.clone()

        def step():
            with torch.inference_mode(False), torch.enable_grad():
                return _sgd_step(x, y, ws, bs, torch.no_grad)
        return step


def _sgd_step(x, y, ws, bs, no_grad):
    """One step of the MLP in Orchard or PyTorch (same API): forward, mean squared error, backward,
    plain SGD update that clears the grads; returns the loss."""
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w + b
        if i < len(ws) - 1:
            h = h.relu()
    loss = ((h - y) ** 2).mean()
    loss.backward()
    with no_grad():
        for p in ws + bs:
            p -= LR * p.grad
            p.grad = None
    return loss.detach()
