"""Generated run directories, checkpoints and run indexes as a crash or a user may leave them: a
real finished run (trained once, in-process, the first time the cases are asked for) with one
thing changed, through the commands that read it (`train --resume`, `eval`, `viz`,
`robustness`, `transfer`, `report`, `runs list`).

A last.ckpt is changed in its JSON skeleton (the safetensors header is rewritten byte by byte,
so no tensor moves): its whole text, or the value at one of its paths, seeded."""

from __future__ import annotations

import functools
import json
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from random import Random
from typing import Any

from reliability_harness import Case, Content
from reliability_payloads import NOT_FILES, PAYLOADS, hostile

RUN = "run"
TINY = ("model.width=4", "data.image_size=8", "train.epochs=1")
RESUME = ("train", "--resume", "{tmp}/run", "train.epochs=2")
OUT = ("data.image_size=8", "train.epochs=1", "run.dir={tmp}/runs")  # a transfer run's
LAST, BEST = f"{RUN}/checkpoints/last.ckpt", f"{RUN}/checkpoints/best.safetensors"

# What a damaged value is replaced with: every JSON type, the skeleton's own markers misused.
JUNK: list[Any] = [
    None, True, 0, -1, 2**70, 1.5, "", "x" * 300, [], [1, "a"], {}, {"k": 1},
    {"__tensor__": "t999"}, {"__tensor__": 3}, {"__tensor__": "t0", "__numpy__": True},
    {"__dict__": 7}, {"__dict__": {"a": {"__tuple__": []}}}, {"__items__": [[[1], 2]]},
    {"__items__": "ab"}, {"__tuple__": {"a": 1}}, {"__tuple__": [1, 2, 3, 4]},
]  # fmt: skip


@functools.cache
def base_runs() -> tuple[dict[str, bytes], bytes, bytes]:
    """(the files of a finished 1-epoch run, a best.safetensors of a wider model, the run
    index of a folder holding the run), made once per test session."""
    from cnnlab.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, width in (("run", 4), ("wide", 6)):
            argv = ["train", *TINY, f"model.width={width}", f"run.dir={root}", f"run.name={name}"]
            with open(os.devnull, "w") as null:
                from contextlib import redirect_stdout

                with redirect_stdout(null):
                    assert main(argv) == 0
        run, wide = sorted(root.glob("*-run"))[0], sorted(root.glob("*-wide"))[0]
        (wide / "config.yaml").unlink()  # leaves the index to the run alone
        with open(os.devnull, "w") as null:
            from contextlib import redirect_stdout

            with redirect_stdout(null):
                assert main(["runs", "list", "--root", str(root)]) == 0
        files = {
            f"{RUN}/{p.relative_to(run)}": p.read_bytes()
            for p in run.rglob("*")
            if p.is_file() and "tensorboard" not in p.parts
        }
        index = next(p for p in root.iterdir() if p.name.startswith(".cnnlab-index"))
        return files, (wide / "checkpoints" / "best.safetensors").read_bytes(), index.read_bytes()


def header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """A safetensors file -> (its JSON header, the tensor bytes after it)."""
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def with_header(head: dict[str, Any], body: bytes) -> bytes:
    text = json.dumps(head).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(text)) + text + body


def with_skeleton(skeleton: str) -> bytes:
    head, body = header(base_runs()[0][LAST])
    head["__metadata__"]["cnnlab.state"] = skeleton
    return with_header(head, body)


def skeleton() -> Any:
    head, _ = header(base_runs()[0][LAST])
    return json.loads(head["__metadata__"]["cnnlab.state"])


def paths(node: Any, at: tuple = ()) -> Iterator[tuple]:
    """Every path to a value in a skeleton ("__dict__" levels folded into their keys)."""
    if isinstance(node, dict) and "__dict__" in node and isinstance(node["__dict__"], dict):
        for key, value in node["__dict__"].items():
            yield (*at, "__dict__", key)
            yield from paths(value, (*at, "__dict__", key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*at, i)
            yield from paths(value, (*at, i))
    elif isinstance(node, dict) and "__tuple__" in node:
        yield from paths(node["__tuple__"], (*at, "__tuple__"))
    elif isinstance(node, dict) and "__items__" in node:
        yield from paths(node["__items__"], (*at, "__items__"))


def changed(tree: Any, path: tuple, value: Any = None, delete: bool = False) -> Any:
    tree = json.loads(json.dumps(tree))
    node = tree
    for step in path[:-1]:
        node = node[step]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return tree


def label(path: tuple) -> str:
    return ".".join(str(p) for p in path if p not in ("__dict__", "__tuple__", "__items__"))


def run_case(kind: str, argv: tuple[str, ...], label: str, files: dict[str, Content],
             expect: str = "error", *names: str) -> Case:  # fmt: skip
    return Case(kind, label, argv, {**base_runs()[0], **files}, expect, names)


def resume_skeletons(rng: Random) -> Iterator[Case]:
    """last.ckpt's skeleton as a whole, then the value at seeded paths, through --resume."""
    whole = {
        "empty": "",
        "not JSON": "{nope",
        "10,000 levels deep": "[" * 10_000 + "]" * 10_000,
        "100 levels deep": "[" * 100 + "]" * 100,
        "a list": "[1, 2]",
        "a string": '"state"',
        "null": "null",
        "truncated": json.dumps(skeleton())[:5000],
    }
    for what, text in whole.items():
        yield run_case("skeleton", RESUME, f"skeleton {what}", {LAST: with_skeleton(text)},
                       "error", "last.ckpt")  # fmt: skip
    tree = skeleton()
    every = list(paths(tree))
    for path in rng.sample(every, min(len(every), 420)):
        value = rng.choice(JUNK)
        yield run_case(
            "skeleton",
            RESUME,
            f"{label(path)} = {json.dumps(value)[:40]}",
            {LAST: with_skeleton(json.dumps(changed(tree, path, value)))},
            "either",
        )
    top = [p for p in every if len(p) <= 4]
    for path in rng.sample(top, min(len(top), 60)):
        yield run_case("skeleton", RESUME, f"{label(path)} deleted",
                       {LAST: with_skeleton(json.dumps(changed(tree, path, delete=True)))},
                       "either")  # fmt: skip


def torn_files(rng: Random) -> Iterator[Case]:
    """A checkpoint cut short, flipped, replaced by another file or a pickle, through every
    command that reads it."""
    files, wide, _ = base_runs()
    readers = {
        LAST: [RESUME, ("transfer", "model.backbone={tmp}/run/checkpoints/last.ckpt", *OUT)],
        BEST: [("eval", "{tmp}/run"), ("viz", "filters", "{tmp}/run"),
               ("robustness", "{tmp}/run", "--only", "noise", "--limit", "8"),
               ("transfer", "model.backbone={tmp}/run", *OUT)],
    }  # fmt: skip
    for target, commands in readers.items():
        data = files[target]
        damage: dict[str, Content] = {
            "empty": b"",
            "8 bytes": data[:8],
            "header length past the end": struct.pack("<Q", 1 << 40) + data[8:],
            "header length 0": struct.pack("<Q", 0) + data[8:],
            **{f"cut at {n}": data[:n] for n in sorted(rng.sample(range(9, len(data)), 8))},
            **{f"byte {n} flipped": _flip(data, n) for n in rng.sample(range(8, 300), 6)},
            **{f"{k} instead": v for k, v in NOT_FILES.items()},
            "text": b"not a checkpoint\n" * 10,
            "a torch.save zip": b"PK\x03\x04" + bytes(100),
        }
        for payload in PAYLOADS:
            for protocol in (0, 2, 5):
                damage[f"{payload.__name__} pickle (protocol {protocol})"] = hostile(
                    payload, protocol
                )
        for argv in commands:
            for what, content in damage.items():
                yield run_case("checkpoint", argv, f"{argv[0]}: {target.rsplit('/')[-1]} {what}",
                               {target: content}, "error")  # fmt: skip
    another = {"another model's": wide}
    head, body = header(files[BEST])
    name = next(k for k in head if k != "__metadata__")
    for what, edit in {
        "a tensor renamed": lambda h: h.update({name + "x": h.pop(name)}),
        "a tensor reshaped": lambda h: h[name].update({"shape": h[name]["shape"][::-1] + [1]}),
        "a tensor's dtype": lambda h: h[name].update({"dtype": "F16"}),
        "a tensor's offsets": lambda h: h[name].update({"data_offsets": [0, 1 << 30]}),
        "no tensors": lambda h: [h.pop(k) for k in list(h) if k != "__metadata__"],
    }.items():
        copy = json.loads(json.dumps(head))
        edit(copy)
        another[what] = with_header(copy, body)
    for argv in readers[BEST]:
        for what, content in another.items():
            # a transfer rebuilds the net the file's own header describes: the wider one fits
            expect = "either" if argv[0] == "transfer" and what == "another model's" else "error"
            yield run_case("checkpoint", argv, f"{argv[0]}: best.safetensors {what}",
                           {BEST: content}, expect, "best.safetensors")  # fmt: skip


def about_headers(rng: Random) -> Iterator[Case]:
    """best.safetensors' header record (the run's config and data shape, which `transfer`
    rebuilds the backbone from) with a seeded junk value at one of its paths."""
    head, body = header(base_runs()[0][BEST])
    about = json.loads(head["__metadata__"]["cnnlab.about"])
    argv = ("transfer", "model.backbone={tmp}/run", *OUT)

    def places(node: Any, at: tuple = ()) -> Iterator[tuple]:
        for key, value in node.items() if isinstance(node, dict) else enumerate(node):
            yield (*at, key)
            if isinstance(value, dict | list):
                yield from places(value, (*at, key))

    every = list(places(about))
    for path in rng.sample(every, min(len(every), 80)):
        value = rng.choice(JUNK)
        copy = json.loads(json.dumps(head))
        copy["__metadata__"]["cnnlab.about"] = json.dumps(changed(about, path, value))
        yield run_case("checkpoint", argv, f"transfer: about.{label(path)} = {value!r:.40}",
                       {BEST: with_header(copy, body)}, "either")  # fmt: skip


def _flip(data: bytes, n: int) -> bytes:
    return data[:n] + bytes([data[n] ^ 0xFF]) + data[n + 1 :]


def run_files(rng: Random) -> Iterator[Case]:
    """A run's config.yaml, summary.json, metrics.jsonl and .lock damaged, through the commands
    that read them."""
    commands = [
        ("report", "{tmp}/run", "-o", "{tmp}/out.html"),
        ("runs", "plot", "{tmp}/run", "-o", "{tmp}/plot.png"),
        ("runs", "list", "--root", "{tmp}"),
        ("eval", "{tmp}/run"),
        RESUME,
    ]
    damage: dict[str, Content] = {
        "empty": b"",
        "not UTF-8": b"\xff\xfe\x00bad",
        "deep JSON": b"[" * 5000 + b"]" * 5000,
        "deep YAML": b"a: " + b"[" * 5000 + b"]" * 5000,
        "deep block YAML": b"".join(b" " * i + b"a:\n" for i in range(3000)),
        "a JSON list": b"[1, 2, 3]",
        "a number": b"3",
        "alias bomb": b"a: &a [x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\n"
        b"d: &d [*c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d]\n",
        "a tag": b"a: !!python/object/apply:os.system ['touch {marker}']\n",
        "random bytes": bytes(rng.getrandbits(8) for _ in range(200)),
        **{f"{k} instead": v for k, v in NOT_FILES.items()},
    }
    for name in ("config.yaml", "summary.json", "metrics.jsonl", ".lock"):
        for argv in commands:
            for what, content in damage.items():
                yield run_case("run dir", argv, f"{argv[0]} {argv[1]}: {name} {what}",
                               {f"{RUN}/{name}": content}, "either")  # fmt: skip


def indexes(rng: Random) -> Iterator[Case]:
    """The run index (a cache) damaged: `runs list` rebuilds it and lists the run."""
    index = base_runs()[2]
    argv = ("runs", "list", "--root", "{tmp}")
    damage: dict[str, Content] = {
        "empty": b"",
        "text": b"not a database\n",
        "JSON": b'{"runs": [1, 2]}',
        **{f"cut at {n}": index[:n] for n in sorted(rng.sample(range(1, len(index)), 10))},
        **{f"byte {n} flipped": _flip(index, n) for n in rng.sample(range(len(index)), 20)},
        "a directory instead": NOT_FILES["a directory"],
        "a FIFO instead": NOT_FILES["a FIFO"],
        "a link to /dev/zero instead": NOT_FILES["a link to /dev/zero"],
        "a link to itself instead": NOT_FILES["a link to itself"],
    }
    for what, content in damage.items():
        yield run_case("index", argv, f"index {what}", {".cnnlab-index.sqlite": content},
                       "accept", "run")  # fmt: skip


GENERATORS = [resume_skeletons, torn_files, about_headers, run_files, indexes]
