"""A labelled grid of images as a PNG (data info's samples, augment preview's draws)."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.atomic import atomic_path


def sample_by_class(
    labels: torch.Tensor, num_classes: int, rows: int = 10, per_row: int = 8, seed: int = 0
) -> list[tuple[int, torch.Tensor]]:
    """Up to `rows` classes spread over the class list, each with up to `per_row` random
    image indices: [(class, (k,) indices), ...]."""
    gen = torch.Generator().manual_seed(seed)
    picked = torch.linspace(0, num_classes - 1, min(rows, num_classes)).round().long().unique()
    out = []
    for c in picked.tolist():
        members = torch.nonzero(labels == c).flatten()
        if len(members):
            chosen = members[torch.randperm(len(members), generator=gen)[:per_row]]
            out.append((c, chosen))
    return out


def save_grid(rows: list[tuple[str, torch.Tensor]], path: Path, title: str = "") -> None:
    """rows: [(label, (k, C, H, W) uint8 images)] -> one PNG, one labelled row per entry."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    cols = max(len(images) for _, images in rows)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.2 * cols + 1.5, 1.2 * len(rows) + 0.5), squeeze=False
    )
    for r, (label, images) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                img = images[c].permute(1, 2, 0).numpy()  # (H, W, C) uint8
                shown = img.squeeze(-1) if img.shape[-1] == 1 else img
                ax.imshow(shown, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
