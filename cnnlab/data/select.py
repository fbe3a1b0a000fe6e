"""data.classes: keep only some classes of a dataset, relabelled 0..k-1 in the order given.

Each entry names one class of the set:
  - an int is a label index: 3 is the fourth class, whatever its name;
  - a str is a class name, matched exactly (case and all);
  - a str of ASCII digits that is no class name is read as a label index, since YAML files and
    the command line may hand over "3" for 3.
An int is always an index, never a name. Where class names are the indices' own digits
(digits, MNIST) the two agree; where they differ, as a folder dataset with classes "1", "10",
"2" (indices 0, 1, 2), the int 1 is the class "10" and the str "1" the class "1": quote names in
YAML, ['10', '2'], to pick classes by name.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import replace

import torch

from cnnlab.data.imageset import ImageSet, SourceSplits
from cnnlab.errors import ConfigError

KEY = "data.classes"
SHOWN = 8  # valid names listed in an error message before "..."


def resolve_classes(keep: Sequence[str | int], classes: Sequence[str]) -> list[int]:
    """The label index of each entry of `keep` in `classes`, in the order given; ConfigError
    (one line, naming data.classes) for an unknown name, an index out of range, a class given
    twice, or fewer than 2 classes."""
    index: list[int] = []
    for entry in keep:
        i = _resolve_one(entry, classes)
        if i in index:
            raise ConfigError(
                f"{KEY}: class {classes[i]!r} (index {i}) is given twice, as "
                f"{keep[index.index(i)]!r} and {entry!r}; list each class once"
            )
        index.append(i)
    if len(index) < 2:
        raise ConfigError(
            f"{KEY} = {list(keep)!r}: keeps {len(index)} class(es); a classifier needs at "
            f"least 2 ({_valid(classes)})"
        )
    return index


def select_classes(images: ImageSet, keep: Sequence[str | int]) -> ImageSet:
    """The images of the classes in `keep` (see the module docstring), labelled keep[0] -> 0,
    keep[1] -> 1, ...; `classes` becomes the kept names in that order."""
    index = resolve_classes(keep, images.classes)
    if index == list(range(len(images.classes))):
        return images  # every class, in its own order: nothing to do
    new_label = torch.full((len(images.classes),), -1, dtype=torch.int64)
    new_label[torch.tensor(index)] = torch.arange(len(index))
    labels = new_label[images.labels]
    kept = labels >= 0
    return ImageSet(images.images[kept], labels[kept], tuple(images.classes[i] for i in index))


def select_splits(splits: SourceSplits, keep: Sequence[str | int] | None) -> SourceSplits:
    """select_classes on the train, val and test sets a source read; keep=None keeps all."""
    if keep is None:
        return splits

    def select(images: ImageSet | None) -> ImageSet | None:
        return None if images is None else select_classes(images, keep)

    return replace(
        splits, train=select(splits.train), val=select(splits.val), test=select(splits.test)
    )


def _resolve_one(entry: str | int, classes: Sequence[str]) -> int:
    n = len(classes)
    if isinstance(entry, str) and entry in classes:
        return classes.index(entry)
    if isinstance(entry, int) and not isinstance(entry, bool):
        if 0 <= entry < n:
            return entry
        raise ConfigError(
            f"{KEY}: label index {entry} is out of range; valid: 0..{n - 1} ({_valid(classes)})"
        )
    if isinstance(entry, str) and entry.isascii() and entry.isdigit():
        if int(entry) < n:
            return int(entry)
        raise ConfigError(
            f"{KEY}: {entry!r} is neither a class name nor a label index in 0..{n - 1} "
            f"({_valid(classes)})"
        )
    if not isinstance(entry, str):
        raise ConfigError(f"{KEY}: {entry!r} is not a class name or a label index")
    raise ConfigError(f"{KEY}: unknown class {entry!r}{_close(entry, classes)} ({_valid(classes)})")


def _close(word: str, classes: Sequence[str]) -> str:
    """' — did you mean A or B?' from the names closest to `word`, ignoring case."""
    by_lower = {name.lower(): name for name in reversed(classes)}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=3, cutoff=0.6)
    return f" — did you mean {' or '.join(repr(by_lower[c]) for c in close)}?" if close else ""


def _valid(classes: Sequence[str]) -> str:
    """'10 classes: 0, 1, 2, ...' with the first few names."""
    shown = ", ".join(classes[:SHOWN]) + (", ..." if len(classes) > SHOWN else "")
    return f"{len(classes)} classes: {shown}"
