"""A short tour of Orchard's tensor core (the main job until the GPT-2 trainer lands).

Runs a few ops, shares memory with NumPy and PyTorch, and fits a least-squares model with matmul.
"""
import time

import numpy as np

import orchard as oc


def main():
    oc.manual_seed(0)
    x = oc.randn(4096, 256)
    true_w = oc.randn(256, 1)
    y = x @ true_w + 0.01 * oc.randn(4096, 1)

    # Normal equations: w = (X^T X)^-1 X^T y, solved in NumPy on Orchard's products (zero-copy).
    start = time.perf_counter()
    xtx, xty = x.T @ x, x.T @ y
    w = oc.from_numpy(np.linalg.solve(xtx.numpy(), xty.numpy()))
    elapsed = time.perf_counter() - start
    err = (w - true_w).abs().max().item()
    print(f"least squares on {tuple(x.shape)}: max |w - w_true| = {err:.2e} in {elapsed * 1e3:.1f} ms")

    logits = oc.randn(8, 10)
    probs = logits.softmax(-1)
    print("softmax rows sum to", probs.sum(dim=-1).tolist()[:3], "...")
    print("argmax:", logits.argmax(dim=1).tolist())

    shared = oc.zeros(3)
    view = shared.numpy()
    view[1] = 42.0
    print("numpy writes show through:", shared.tolist())


if __name__ == "__main__":
    main()
