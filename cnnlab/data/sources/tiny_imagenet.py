"""Tiny ImageNet (200 classes of 64×64 images) as unpacked from tiny-imagenet-200.zip.

    data.root/wnids.txt                   one WordNet id per line: the classes, in this order
    data.root/words.txt                   "wnid<TAB>name, synonym, ..." (optional; names only)
    data.root/train/<wnid>/images/*.JPEG  500 training images per class
    data.root/val/images/*.JPEG           the dataset's own validation split, labelled by
    data.root/val/val_annotations.txt     "file<TAB>wnid<TAB>x<TAB>y<TAB>w<TAB>h" lines

test/ ships without labels and is ignored. Class names are the first synonym in words.txt
(the wnid when it has none). Some images are grayscale JPEGs: decoding makes the whole set RGB.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnnlab.config.schema import DataConfig
from cnnlab.data import cache
from cnnlab.data.imageset import SourceSplits
from cnnlab.data.registry import register_source
from cnnlab.data.sources.image_folder import Found, decode_found, list_images, require_root
from cnnlab.errors import DataError

_EXPECTED = "the unpacked tiny-imagenet-200 folder (wnids.txt, train/<wnid>/images/*.JPEG)"


@register_source("tiny-imagenet")
def read_tiny_imagenet(cfg: DataConfig) -> SourceSplits:
    """Tiny-ImageNet's layout: wnids.txt, train/<wnid>/images, val/ with its annotations."""
    root = require_root(cfg, _EXPECTED)
    wnids = _read_wnids(root / "wnids.txt")
    classes = _class_names(root / "words.txt", wnids)
    found = {"train": _train_files(root, wnids)}
    if (root / "val").is_dir():
        found["val"] = _val_files(root, wnids)
    # The labels come from the text files too, so they are part of the cache key.
    texts = [root / "wnids.txt", root / "words.txt", root / "val" / "val_annotations.txt"]
    label_stamps = [_stamp(p, root) for p in texts if p.is_file()]
    return decode_found(cfg, "tiny-imagenet", root, found, classes, label_stamps)


def _read_wnids(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: not found; data.root should be {_EXPECTED}")
    wnids: list[str] = []
    for n, line in enumerate(_read_lines(path), 1):
        wnid = line.strip()
        if wnid in wnids:
            raise DataError(f"{path}:{n}: {wnid} is listed twice")
        if wnid:
            wnids.append(wnid)
    if len(wnids) < 2:
        raise DataError(f"{path}: lists {len(wnids)} class(es); a classifier needs at least 2")
    return wnids


def _class_names(path: Path, wnids: list[str]) -> tuple[str, ...]:
    """First synonym per wnid from words.txt; the wnid itself when missing or ambiguous."""
    words: dict[str, str] = {}
    if path.is_file():
        wanted = set(wnids)
        for line in _read_lines(path):
            wnid, _, names = line.partition("\t")
            if wnid in wanted and names.strip():
                words[wnid] = names.split(",")[0].strip()
    names = [words.get(w, w) for w in wnids]
    # Two synsets can share a first synonym; a report must still tell them apart.
    return tuple(
        f"{name} ({w})" if names.count(name) > 1 else name
        for w, name in zip(wnids, names, strict=True)
    )


def _train_files(root: Path, wnids: list[str]) -> tuple[list[Found], list[int]]:
    if not (root / "train").is_dir():
        raise DataError(f"{root / 'train'}: not found; data.root should be {_EXPECTED}")
    files: list[Found] = []
    labels: list[int] = []
    for label, wnid in enumerate(wnids):
        images = root / "train" / wnid / "images"
        if not images.is_dir():
            raise DataError(f"{images}: not found, but {root / 'wnids.txt'} lists {wnid}")
        found = list_images(images, root)
        if not found:
            raise DataError(f"{images}: holds no image files")
        files += found
        labels += [label] * len(found)
    return files, labels


def _val_files(root: Path, wnids: list[str]) -> tuple[list[Found], list[int]]:
    """val/images files in val_annotations.txt order, labelled by the wnid on each line."""
    notes = root / "val" / "val_annotations.txt"
    if not notes.is_file():
        raise DataError(f"{notes}: not found; it labels the images in {root / 'val' / 'images'}")
    images = root / "val" / "images"
    if not images.is_dir():
        raise DataError(f"{images}: not found, but {notes} labels images in it")
    on_disk = {os.path.basename(p): (p, s) for p, s in list_images(images, root)}
    index = {wnid: i for i, wnid in enumerate(wnids)}
    files: list[Found] = []
    labels: list[int] = []
    for n, line in enumerate(_read_lines(notes), 1):
        if not line.strip():
            continue
        name, _, rest = line.partition("\t")
        wnid = rest.split("\t")[0].strip()
        if wnid not in index:
            raise DataError(f"{notes}:{n}: unknown wnid {wnid!r} (not in wnids.txt)")
        if name not in on_disk:
            raise DataError(f"{notes}:{n}: {name} is not an image file in {images}")
        files.append(on_disk[name])
        labels.append(index[wnid])
    if not files:
        raise DataError(f"{notes}: labels no images")
    return files, labels


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read it as UTF-8 text ({e})") from None


def _stamp(path: Path, root: Path) -> cache.Stamp:
    st = path.stat()
    return (path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns)
