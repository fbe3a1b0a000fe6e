"""A folder of images, one sub-directory per class (torchvision's ImageFolder layout).

    data.root/<class>/**/<image>              classes = sorted sub-directory names
    data.root/train/<class>/**/<image>        or split directories: train/ and, optionally,
    data.root/{val,test}/<class>/**/<image>   val/ and test/ with classes drawn from train's

Images are any of IMAGE_SUFFIXES (any case), found at any depth inside a class directory;
hidden files and directories (".name") are ignored. Decoding and its cache: data.decode,
data.cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cnnlab.config.schema import DataConfig
from cnnlab.data import cache, decode
from cnnlab.data.imageset import SourceSplits
from cnnlab.data.registry import register_source
from cnnlab.errors import ConfigError, DataError
from cnnlab.registry import did_you_mean

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_SUFFIXES = frozenset(s.lstrip(".") for s in IMAGE_SUFFIXES)
_SPLITS = ("train", "val", "test")

# (absolute path, stamp) of one image file; the stamp keys the decoded cache.
Found = tuple[str, cache.Stamp]


@register_source("folder")
def read_folder(cfg: DataConfig) -> SourceSplits:
    """A folder of images with one sub-directory per class, optionally under train/ val/ test/."""
    root = require_root(cfg, "a folder with one sub-directory of images per class")
    split_dirs = _split_dirs(root)  # {"train": root} without split directories
    classes = _class_dirs(split_dirs["train"])
    _check_classes(split_dirs["train"], classes)
    found = {name: _split_files(d, root, classes) for name, d in split_dirs.items()}
    return decode_found(cfg, "folder", root, found, classes)


def decode_found(
    cfg: DataConfig,
    source: str,
    root: Path,
    found: dict[str, tuple[list[Found], list[int]]],
    classes: tuple[str, ...],
    extra_stamps: Sequence[cache.Stamp] = (),
) -> SourceSplits:
    """The splits of the files found (split -> (files, class indices)), from the cache when
    neither the files, `extra_stamps` (e.g. label files) nor the decode options changed."""
    listing = {
        name: ([path for path, _ in files], labels) for name, (files, labels) in found.items()
    }
    stamps = [*extra_stamps, *(stamp for files, _ in found.values() for _, stamp in files)]
    splits = cache.cached_splits(
        cfg, source, root, stamps, lambda: decode.decode_splits(cfg, listing, classes)
    )
    return replace(splits, location=str(root))


def require_root(cfg: DataConfig, expected: str) -> Path:
    """data.root as an existing directory, or an error saying what belongs there."""
    if cfg.root is None:
        raise ConfigError(f"data.root: not set; data.name={cfg.name} reads {expected}")
    # Absolute, so messages and skipped-file lists name files wherever the user runs from.
    root = Path(cfg.root).expanduser().absolute()
    if not root.exists():
        raise DataError(f"data.root = {root}: no such directory; expected {expected}")
    if not root.is_dir():
        raise DataError(f"data.root = {root}: not a directory; expected {expected}")
    return root


def list_images(directory: Path, root: Path) -> list[Found]:
    """Image files at any depth under `directory` (root or a path below it), sorted by path,
    stamped relative to root."""
    found: list[Found] = []
    cut = len(os.path.join(str(root), ""))  # cut "root/" off paths
    # The root counts as above a class folder, so a link back to it is a loop too.
    above = frozenset() if Path(directory) == Path(root) else frozenset({_identity(root)})
    _walk(str(directory), cut, found, above)
    found.sort()  # by absolute path: the same order as by path below root
    return found


def _identity(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _walk(directory: str, cut: int, found: list[Found], above: frozenset) -> None:
    # Symlinked folders are followed (datasets are often linked in), but not one that is
    # already on the path from the dataset root down to here: that link is a loop.
    here = _identity(directory)
    if here in above:
        return
    above = above | {here}
    # os.scandir, not Path.rglob, and no per-file Path objects: on a cache hit, listing and
    # stat-ing 100k files is most of the time.
    for entry in _entries(directory):
        name = entry.name
        if name.startswith("."):
            continue
        if name.rpartition(".")[2].lower() in _SUFFIXES and entry.is_file():
            st = entry.stat()
            path = entry.path  # root/<rel>: the stamp keeps the part below root
            found.append((path, (path[cut:], st.st_size, st.st_mtime_ns)))
        elif entry.is_dir():
            _walk(entry.path, cut, found, above)


def _subdirs(directory: Path) -> list[str]:
    """Sorted names of the non-hidden sub-directories."""
    return sorted(e.name for e in _entries(directory) if e.is_dir() and not e.name.startswith("."))


def _entries(directory: str | Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError as e:  # unreadable (permissions), or removed while we list
        raise DataError(f"{directory}: cannot list the directory ({e.strerror})") from None


def _split_dirs(root: Path) -> dict[str, Path]:
    """{"train": root/train, "val": ..., "test": ...} when root has train/, else {"train": root}."""
    names = _subdirs(root)
    if "train" not in names:
        return {"train": root}
    # A class named "train" is implausible; a stray directory beside train/ is more likely a
    # misnamed split ("valid/") whose images would otherwise be silently left out.
    for name in names:
        if name not in _SPLITS:
            raise DataError(
                f"{root / name}: unexpected beside train/; a split layout has only train/, "
                "val/ and test/, each holding one sub-directory per class"
            )
    return {name: root / name for name in _SPLITS if name in names}


def _class_dirs(directory: Path) -> tuple[str, ...]:
    classes = tuple(_subdirs(directory))
    if not classes:
        loose = [p for p, _ in list_images(directory, directory)]
        hint = f" (it holds {len(loose)} images directly)" if loose else ""
        raise DataError(
            f"{directory}: no class sub-directories{hint}; expected {directory}/<class>/<images>"
        )
    return classes


def _check_classes(directory: Path, classes: tuple[str, ...]) -> None:
    if len(classes) == 1:
        raise DataError(
            f"{directory}: only one class sub-directory ({classes[0]}/); "
            "a classifier needs at least 2"
        )


def _split_files(
    directory: Path, root: Path, train_classes: tuple[str, ...]
) -> tuple[list[Found], list[int]]:
    """Every image of a split directory and its class index (train's numbering)."""
    index = {name: i for i, name in enumerate(train_classes)}
    per_class = {name: list_images(directory / name, root) for name in _class_dirs(directory)}
    if not any(per_class.values()):
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DataError(f"{directory}: no image files in any class sub-directory ({suffixes})")
    files: list[Found] = []
    labels: list[int] = []
    for name, found in per_class.items():
        if name not in index:
            raise DataError(
                f"{directory / name}: class {name!r} is not in train/"
                f"{did_you_mean(name, list(train_classes))}"
            )
        if not found:
            raise DataError(f"{directory / name}: class folder holds no image files")
        files += found
        labels += [index[name]] * len(found)
    return files, labels
