"""Outputs of the MNIST128 study: the Markdown table, the bar chart and the overlay figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from wsol.localize import ReceptiveField, gudi_detect, upsample_map

__all__ = ["format_table", "save_bar_chart", "save_overlays"]

_TASK_LABELS = {"classification": "Classification", "pinpointing": "Pin-pointing", "extent": "Extent"}


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: ours next to Gudi et al. 2017 Table 1 (mAP %), one row per pooling."""
    lines = [
        "| pooling | classification (ours / paper) | pin-pointing (ours / paper) | extent (ours / paper) | r | floor "
        "| time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        paper = row.get("paper") or {}
        cells = [f"{_cell(row[t])} / {_cell(paper.get(t))}" for t in _TASK_LABELS]
        floor = "0" if row["floor_fraction"] is None else f"{row['floor_fraction']}·max"
        lines.append(
            f"| {row['label']} | " + " | ".join(cells) + f" | {row['ratio']} | {floor} | {row['total_seconds']:.0f} |"
        )
    return "\n".join(lines)


def save_bar_chart(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Grouped bars of the three task APs per pooling; the paper's values are drawn as black ticks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.2))
    width = 0.26
    x = np.arange(len(rows))
    for j, (task, label) in enumerate(_TASK_LABELS.items()):
        offset = (j - 1) * width
        ax.bar(x + offset, [r[task] for r in rows], width, label=label)
        for i, row in enumerate(rows):
            paper = (row.get("paper") or {}).get(task)
            if paper is not None:
                ax.plot([x[i] + offset - width / 2, x[i] + offset + width / 2], [paper, paper], color="black", lw=2)
    ax.plot([], [], color="black", lw=2, label="Gudi et al. 2017 (Table 1)")
    ax.set_xticks(x, [r["label"] for r in rows], rotation=25, ha="right")
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 105)
    ax.set_title("MNIST128, digit 3 vs rest")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=4, fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_overlays(
    path: Path,
    dataset: Any,
    cams: np.ndarray,
    scores: np.ndarray,
    rf: ReceptiveField,
    row: dict[str, Any],
    count: int = 4,
) -> Path:
    """Image + upsampled CAM heatmap + predicted (red) and GT (green) boxes for the first positives."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = dataset.config.positive_digit
    positives = [i for i in range(len(dataset)) if int(dataset.annotation(i).labels[0]) == target]
    picks = positives[: max(1, count)]
    size = dataset.config.canvas_size
    fig, axes = plt.subplots(1, len(picks), figsize=(3.0 * len(picks), 3.3), squeeze=False)
    for ax, i in zip(axes[0], picks, strict=False):
        image, _ = dataset[i]
        heat = upsample_map(cams[i], (size, size), "bilinear")
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.imshow(heat, cmap="jet", alpha=0.45)
        det = gudi_detect(
            cams[i], row["cam_threshold"], rf=rf, image_size=(size, size), ratio=row["ratio"],
            relative_floor=row["floor_fraction"],
        )
        for b in det.boxes[:1]:
            ax.add_patch(plt.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, ec="red", lw=2))
        for g in dataset.annotation(i).boxes():
            ax.add_patch(plt.Rectangle((g[0], g[1]), g[2] - g[0], g[3] - g[1], fill=False, ec="lime", lw=1.5))
        ax.set_title(f"p={scores[i]:.2f}", fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{row['label']}: CAM, predicted box (red), GT ink box (green)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
