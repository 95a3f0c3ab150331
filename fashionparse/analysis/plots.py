"""Report figures as PNG bytes (matplotlib's object API on the Agg canvas: no global pyplot state)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from fashionparse.categories import BY_ID, NUM_CATEGORIES

LOSS_KEYS = ("loss", "loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
RECALLS = np.linspace(0.0, 1.0, 101)  # COCOeval's recall points


def to_png(fig: Figure, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, values) of the records that have a finite ``key``."""
    points = [(r["iteration"], r[key]) for r in history
              if isinstance(r.get(key), (int, float)) and np.isfinite(r[key])]
    return (np.array([p[0] for p in points], dtype=float), np.array([p[1] for p in points], dtype=float))


def _stage_starts(history: Sequence[Mapping[str, float]]) -> list[float]:
    """Iterations at which the logged ``stage`` changes."""
    starts, previous = [], None
    for record in history:
        stage = record.get("stage")
        if previous is not None and stage != previous:
            starts.append(record["iteration"])
        previous = stage
    return starts


def training_curves(history: Sequence[Mapping[str, float]]) -> bytes:
    """Losses (log scale) and learning rate against iteration; dashed lines where a training stage starts."""
    fig = Figure(figsize=(11, 3.6))
    loss_ax, lr_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    for key in LOSS_KEYS:
        x, y = _series(history, key)
        if len(x):
            loss_ax.plot(x, y, label=key, linewidth=2.0 if key == "loss" else 1.0)
    if any(y > 0 for key in LOSS_KEYS for y in _series(history, key)[1]):
        loss_ax.set_yscale("log")
    loss_ax.set(xlabel="iteration", ylabel="loss", title="training losses")
    loss_ax.legend(fontsize=8, ncols=2)
    x, y = _series(history, "lr")
    lr_ax.plot(x, y, color="tab:purple")
    lr_ax.set(xlabel="iteration", ylabel="learning rate", title="learning rate")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in (loss_ax, lr_ax):
        for start in _stage_starts(history):
            ax.axvline(start, color="grey", linestyle="--", linewidth=0.8)
        ax.grid(alpha=0.3)
    return to_png(fig)


def compare_losses(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> bytes:
    """Total training loss of several runs on one (log) axis."""
    fig = Figure(figsize=(8, 3.6))
    ax = fig.subplots()
    for label, history in histories.items():
        x, y = _series(history, "loss")
        ax.plot(x, y, label=label)
    ax.set(xlabel="iteration", ylabel="total loss", title="training loss")
    if any(len(_series(h, "loss")[0]) for h in histories.values()):
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return to_png(fig)


def pr_curves(precision: np.ndarray, cat_ids: Sequence[int], title: str) -> bytes:
    """Per-category precision-recall curves from COCOeval precision [T=10, R=101, K] at IoU .50 and .75.

    Each panel's title gives the category's AP (mean over the 10 IoUs); panels of categories without
    items say so.
    """
    fig = Figure(figsize=(14, 8.4))
    fig.suptitle(title)
    axes = fig.subplots(3, 5, sharex=True, sharey=True).ravel()
    for ax, cat_id in zip(axes, cat_ids):
        p = precision[:, :, list(cat_ids).index(cat_id)]
        name = BY_ID[cat_id].name
        if (p[0] < 0).all():
            ax.set_title(f"{name}\n(no items)", fontsize=9)
        else:
            ax.plot(RECALLS, np.clip(p[0], 0, None), label="IoU .50", color="tab:blue")
            ax.plot(RECALLS, np.clip(p[5], 0, None), label="IoU .75", color="tab:orange")
            ax.set_title(f"{name}\nAP {100 * p[p > -1].mean():.1f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(cat_ids):]:
        ax.set_visible(False)
    fig.legend(handles=[Line2D([], [], color="tab:blue", label="IoU .50"),
                        Line2D([], [], color="tab:orange", label="IoU .75")], loc="upper right", fontsize=9)
    for ax in axes[10:15]:
        ax.set_xlabel("recall")
    for ax in axes[::5]:
        ax.set_ylabel("precision")
    return to_png(fig)


def confusion_heatmap(matrix: np.ndarray, iou_threshold: float, score_threshold: float) -> bytes:
    """Heatmap of the 13 x 13 confusion matrix (rows: item category, columns: detected category).

    Colour: share of the row's matched items; text: the count.
    """
    counts = np.asarray(matrix)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    fig = Figure(figsize=(8.5, 7.5))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the item category's matches")
    names = [BY_ID[i].name for i in range(1, NUM_CATEGORIES + 1)]
    ax.set_xticks(range(NUM_CATEGORIES), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(NUM_CATEGORIES), names, fontsize=8)
    for i in range(NUM_CATEGORIES):
        for j in range(NUM_CATEGORIES):
            if counts[i, j]:
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.55 else "black")
    ax.set(xlabel="detected category", ylabel="item category",
           title=f"matched detections (IoU >= {iou_threshold:g}, score >= {score_threshold:g})")
    return to_png(fig)
