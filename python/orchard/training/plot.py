"""The loss-curve PNG, drawn with matplotlib when it is installed."""


def save_loss_curve(history, path):
    """Returns a message saying where the plot went, or why there is none."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed; skipping the loss-curve PNG"
    fig, ax = plt.subplots(figsize=(7, 4))
    for split, style in (("train", "-"), ("val", "o-")):
        points = history[split]
        if points:
            ax.plot([s for s, _ in points], [loss for _, loss in points], style, label=split)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per byte)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"loss curve written to {path}"
