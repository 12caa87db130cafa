"""The loss-curve PNG for the report: total / KD / CE / hidden loss per epoch, and the eval metric."""

from __future__ import annotations

from pathlib import Path

from edgekd.report.atomic import atomic_path


def plot_history(history: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, label in (("loss", "train loss"), ("kd", "KD part"), ("ce", "CE part"), ("hidden", "hidden part")):
        if any(h.get(key) for h in history):
            ax_loss.plot(epochs, [h.get(key, 0.0) for h in history], marker="o", label=label)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss (weighted)")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    metric = history[0].get("eval_metric", "eval") if history else "eval"
    values = [h.get("eval") for h in history]
    if any(v is not None for v in values):
        ax_metric.plot(epochs, values, marker="o", color="tab:green")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(metric)
    ax_metric.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
