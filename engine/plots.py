"""Figures (matplotlib, the optional ``foretell[plot]`` extra): neural training curves and the
gradient-norm-versus-distance plot of ``foretell diagnose gradients``."""

from __future__ import annotations

import io
from pathlib import Path

try:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
except ImportError as exc:  # pragma: no cover - exercised where matplotlib is absent
    raise ImportError("plots need matplotlib: pip install 'foretell[plot]'") from exc

COLOURS = ("#3a7bd5", "#e4572e", "#2a9d8f", "#8d6cab")


def curves_figure(runs: list[tuple[str, list[dict]]]) -> Figure:
    """Loss, perplexity, learning rate, gradient norms and clipping, tokens/s per epoch."""
    fig = Figure(figsize=(11, 7), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for (name, rows), colour in zip(runs, COLOURS):
        epoch = [r["epoch"] for r in rows]
        axes[0].plot(epoch, [r["train_loss"] for r in rows], "--", color=colour, label=f"{name} train")
        axes[0].plot(epoch, [r["valid_loss"] for r in rows], "-o", color=colour, label=f"{name} valid")
        axes[1].plot(epoch, [r["valid_perplexity"] for r in rows], "-o", color=colour, label=name)
        axes[2].plot(epoch, [r["lr"] for r in rows], "-o", color=colour, label=name)
        axes[3].plot(epoch, [r["grad_norm_mean"] for r in rows], "-o", color=colour, label=f"{name} mean")
        if "grad_norm_p90" in rows[0]:
            axes[3].fill_between(epoch, [r["grad_norm_p10"] for r in rows], [r["grad_norm_p90"] for r in rows], color=colour, alpha=0.2, label=f"{name} 10-90%")
        axes[4].plot(epoch, [100 * r["clipped_share"] for r in rows], "-o", color=colour, label=name)
        axes[5].plot(epoch, [r["tokens_per_s"] for r in rows], "-o", color=colour, label=name)
    titles = ("loss (nats/token)", "validation perplexity", "learning rate", "gradient norm before clipping", "steps clipped (%)", "training tokens/s")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[2].set_yscale("log")
    return fig


def gradient_figure(results: list[tuple[str, list[float]]]) -> Figure:
    """Mean norm of d loss_t / d h_(t-k) against k, log scale, one line per model."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for (name, norms), colour in zip(results, COLOURS):
        ax.plot(range(len(norms)), norms, "-o", markersize=3, color=colour, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("distance k (steps back from the predicted word)")
    ax.set_ylabel("mean ‖∂ loss_t / ∂ h_(t−k)‖")
    ax.set_title("How far back the training signal reaches")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return fig


def save(fig: Figure, path: str | Path) -> None:
    """PNG or SVG by the file's extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in (".png", ".svg", ".pdf"):
        raise ValueError(f"plots are written as .png, .svg or .pdf, not {suffix or 'no extension'!r}")
    fig.savefig(path, dpi=120)


def svg_of(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]
