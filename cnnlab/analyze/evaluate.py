"""`cnnlab eval`: a finished run's best weights on its val or test split, in detail.

One pass over the split gives the logits (averaged over test-time views with --tta), and from
them: accuracy, top-k accuracy, per-class precision/recall/F1, the confusion matrix and the
examples with the highest loss. write() puts them into the run directory, where `cnnlab report`
embeds the confusion matrix.

Per-class numbers follow scikit-learn's conventions (precision_recall_fscore_support with
zero_division=0; macro = unweighted mean over every class, including those absent from the
split), computed here from the confusion matrix.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.analyze.trained import TrainedModel
from cnnlab.atomic import atomic_path, write_text_atomic
from cnnlab.augment.tta import build_views
from cnnlab.config import Config
from cnnlab.config.defaults import EVAL
from cnnlab.errors import ConfigError
from cnnlab.track.rundir import CONFUSION
from cnnlab.training.step import logits

ANNOTATE_MAX_CLASSES = 20  # above this the counts in the confusion plot become unreadable
TICKS_MAX_CLASSES = 50


@dataclass
class EvalResult:
    split: str
    views: list[Any]  # the augment.tta specs averaged over; [] without TTA
    classes: tuple[str, ...]
    loss: float  # mean cross-entropy
    accuracy: float
    top_k: dict[int, float]
    precision: list[float]  # per class
    recall: list[float]
    f1: list[float]
    support: list[int]  # images of each class in the split
    confusion: np.ndarray  # (K, K) counts: rows the true class, columns the prediction
    worst: list[dict[str, Any]]  # highest loss first: index, true, pred, loss
    worst_images: torch.Tensor = field(repr=False)  # (N, C, H, W) uint8, in `worst` order
    labels: np.ndarray = field(repr=False)  # per image of the split, in order
    predictions: np.ndarray = field(repr=False)
    losses: np.ndarray = field(repr=False)

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def macro(self) -> dict[str, float]:
        return {
            name: float(np.mean(values))
            for name, values in (
                ("precision", self.precision),
                ("recall", self.recall),
                ("f1", self.f1),
            )
        }

    @property
    def what(self) -> str:
        """'test-tta': the split and the views, which name every file this result writes."""
        return f"{self.split}{'-tta' if self.views else ''}"

    @property
    def stem(self) -> str:
        return f"eval-{self.what}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "tta": self.views,
            "images": self.count,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "top_k": {str(k): v for k, v in self.top_k.items()},
            "macro": self.macro,
            "per_class": [
                {"class": c, "precision": p, "recall": r, "f1": f, "support": s}
                for c, p, r, f, s in zip(
                    self.classes, self.precision, self.recall, self.f1, self.support, strict=True
                )
            ],
            "confusion": self.confusion.tolist(),
            "worst": self.worst,
        }


def evaluate_run(
    run: TrainedModel,
    split: str = "val",
    tta: bool = False,
    top_k: tuple[int, ...] = (1, EVAL.top_k),
    worst: int = EVAL.worst,
) -> EvalResult:
    """Evaluate `run`'s best weights on its `split`; with `tta`, average the logits over the
    test-time views its model was trained to be invariant to (tta_views), as training's
    evaluation does."""
    images = run.images(split)
    if not top_k or min(top_k) < 1:
        raise ConfigError(f"--top-k {min(top_k, default=0)}: expected an integer >= 1")
    if worst < 0:
        raise ConfigError(f"--worst {worst}: expected 0 or more")
    specs = tta_views(run.config) if tta else []
    num_classes = run.info.num_classes
    ks = sorted({min(k, num_classes) for k in top_k})
    losses, predictions, hits = _pass(run, split, specs, ks)
    labels = images.labels.numpy()
    confusion = np.bincount(
        labels * num_classes + predictions, minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)
    precision, recall, f1 = _per_class(confusion)
    n = len(labels)
    chosen = np.argsort(-losses, kind="stable")[: min(worst, n)]
    names = run.info.classes
    return EvalResult(
        split=split,
        views=specs,
        classes=tuple(names),
        loss=float(losses.mean()) if n else math.nan,
        accuracy=float((predictions == labels).mean()) if n else math.nan,
        top_k={k: float(h.mean()) if n else math.nan for k, h in zip(ks, hits, strict=True)},
        precision=precision,
        recall=recall,
        f1=f1,
        support=confusion.sum(axis=1).tolist(),
        confusion=confusion,
        worst=[
            {
                "index": int(i),
                "true": names[labels[i]],
                "pred": names[predictions[i]],
                "loss": float(losses[i]),
            }
            for i in chosen
        ],
        worst_images=images.images[torch.from_numpy(chosen).long()],
        labels=labels,
        predictions=predictions,
        losses=losses,
    )


def tta_views(config: Config) -> list[Any]:
    """The views --tta averages over: the run's augment.tta, or a mirror when its training
    flipped images left-right (augment.train has flip); any other view would show the model
    images it never learned from (a mirrored Fashion-MNIST shoe: 83% against 91%)."""
    if config.augment.tta:
        return list(config.augment.tta)
    if any(op.get("op") == "flip" and not op.get("vertical", False) for op in config.augment.train):
        return ["flip"]
    raise ConfigError(
        "--tta: the run has no augment.tta and did not train on flipped images, so no test-time"
        " view is one its model learned to be invariant to (train with augment.tta, or with"
        " {op: flip} in augment.train)"
    )


def _pass(
    run: TrainedModel, split: str, specs: list[Any], ks: list[int]
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per image: loss, prediction, and for each k whether the label is among the top k; from
    training's own evaluation pass, so that the numbers match summary.json's."""
    views = build_views(specs)
    precision = run.precision
    losses, predictions, hits = [], [], []
    kmax = max(ks)
    for out, y in logits(run.model, run.loader(split), precision, views):
        losses.append(F.cross_entropy(out, y, reduction="none"))
        pred = out.argmax(dim=1)
        predictions.append(pred)
        # argmax's pick counts for every k, so top-k never drops below top-1 on ties.
        right = pred == y
        in_top = out.topk(kmax, dim=1).indices == y[:, None]
        hits.append(torch.stack([right | in_top[:, :k].any(dim=1) for k in ks]))
    if not losses:
        empty = np.zeros(0)
        return empty, empty.astype(np.int64), [empty for _ in ks]
    hit = torch.cat(hits, dim=1).cpu().numpy()
    return (
        torch.cat(losses).cpu().numpy().astype(np.float64),
        torch.cat(predictions).cpu().numpy().astype(np.int64),
        list(hit),
    )


def _per_class(confusion: np.ndarray) -> tuple[list[float], list[float], list[float]]:
    """Precision, recall and F1 per class; 0 where undefined (no predictions, no images)."""
    tp = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros_like(tp), where=both > 0)
    return precision.tolist(), recall.tolist(), f1.tolist()


def write(result: EvalResult, run_dir: str | Path) -> list[Path]:
    """eval-<split>[-tta].json, confusion-<split>[-tta].csv and .png, and worst-<split>.png
    (when there are worst examples) into `run_dir`; returns their paths."""
    run_dir = Path(run_dir)
    confusion = run_dir / f"{CONFUSION}-{result.what}"
    paths = [
        run_dir / f"{result.stem}.json",
        confusion.with_suffix(".csv"),
        confusion.with_suffix(".png"),
    ]
    write_text_atomic(paths[0], json.dumps(result.to_dict(), indent=2) + "\n")
    write_text_atomic(paths[1], confusion_csv(result))
    _save(confusion_figure(result), paths[2])
    if result.worst:
        paths.append(run_dir / f"worst-{result.split}.png")
        _save(worst_figure(result), paths[-1])
    return paths


def confusion_csv(result: EvalResult) -> str:
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(["true\\pred", *result.classes])
    for name, row in zip(result.classes, result.confusion.tolist(), strict=True):
        out.writerow([name, *row])
    return buffer.getvalue()


def confusion_figure(result: EvalResult):
    """Colours: each row divided by its class's count (the share of that class predicted as
    each column), so that rare classes show as clearly as common ones; text: the counts."""
    from matplotlib.figure import Figure

    k = len(result.classes)
    counts = result.confusion
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    side = min(max(4.0, 0.42 * k + 2.0), 16.0)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    shown = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(shown, ax=ax, shrink=0.8, label="share of the true class")
    if k <= TICKS_MAX_CLASSES:
        ticks = list(range(k))
        ax.set_xticks(ticks, [_short(c) for c in result.classes], rotation=90, fontsize=8)
        ax.set_yticks(ticks, [_short(c) for c in result.classes], fontsize=8)
    if k <= ANNOTATE_MAX_CLASSES:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    colour = "white" if shares[i, j] > 0.5 else "black"
                    ax.text(
                        j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=colour
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    tta = " with TTA" if result.views else ""
    ax.set_title(f"{result.split}{tta}: accuracy {result.accuracy:.2%} of {result.count}")
    return fig


def worst_figure(result: EvalResult, per_row: int = 8):
    """The highest-loss images, each titled "true → pred (loss)"."""
    from matplotlib.figure import Figure

    n = len(result.worst)
    cols = min(per_row, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.5 * cols + 0.4, 1.7 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        img = result.worst_images[i].permute(1, 2, 0).numpy()  # (H, W, C) uint8
        shown = img[..., 0] if img.shape[-1] != 3 else img  # grey, or the first of odd channels
        ax.imshow(shown, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        entry = result.worst[i]
        ax.set_title(
            f"{_short(entry['true'])} → {_short(entry['pred'])}\n({entry['loss']:.2f})", fontsize=8
        )
    fig.suptitle(f"highest loss on {result.split}: true → predicted (loss)", fontsize=10)
    return fig


def _short(name: str, width: int = 12) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def data_overrides(items: list[str]) -> list[str]:
    """`--data` values as config overrides: data.root=/x or root=/x; other sections would
    change the model or its training and are refused."""
    out = []
    for item in items:
        key, eq, _ = item.partition("=")
        if not eq or not key:
            raise ConfigError(f"--data {item}: expected KEY=VALUE, e.g. data.root=/path")
        if "." not in key:
            item = f"data.{item}"
        elif not key.startswith("data."):
            raise ConfigError(f"--data {item}: only data.* keys can change when evaluating a run")
        out.append(item)
    return out


def summary_tables(result: EvalResult, max_rows: int = 30) -> list[Any]:
    """Rich renderables for the terminal: the headline numbers, then one row per class (the
    `max_rows` lowest-F1 classes when there are more)."""
    from rich.table import Table

    head = Table(box=None, show_header=False, pad_edge=False)
    head.add_column(style="bold")
    head.add_column(justify="right")
    tta = f", TTA: {_describe(result.views)}" if result.views else ""
    head.add_row("split", f"{result.split} ({result.count} images{tta})")
    head.add_row("accuracy", f"{result.accuracy:.2%}")
    for k, value in result.top_k.items():
        if k > 1:
            head.add_row(f"top-{k}", f"{value:.2%}")
    head.add_row("loss", f"{result.loss:.4f}")
    for name, value in result.macro.items():
        head.add_row(f"macro {name}", f"{value:.2%}")

    per_class = Table(box=None, pad_edge=False)
    per_class.add_column("class", overflow="fold")
    for name in ("precision", "recall", "f1", "support"):
        per_class.add_column(name, justify="right")
    order = list(range(len(result.classes)))
    if len(order) > max_rows:
        order = sorted(order, key=lambda i: result.f1[i])[:max_rows]
        per_class.caption = f"the {max_rows} classes with the lowest F1 of {len(result.classes)}"
    for i in order:
        per_class.add_row(
            result.classes[i],
            f"{result.precision[i]:.2%}",
            f"{result.recall[i]:.2%}",
            f"{result.f1[i]:.2%}",
            str(result.support[i]),
        )
    return [head, per_class]


def _describe(specs: list[Any]) -> str:
    return ", ".join(s if isinstance(s, str) else json.dumps(s) for s in specs)
