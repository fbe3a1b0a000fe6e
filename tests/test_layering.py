"""The import direction drawn in DESIGN.md, checked on every module's import statements."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cnnlab"
BASE = {
    "config",
    "errors",
    "registry",
    "atomic",
    "imagegrid",
    "checkpoint",
}  # the bottom layer, importable from anywhere
SIBLINGS = {"data", "augment", "models", "track"}  # import the base only, never each other
TRAIN = {"training"}  # may import the siblings
UPPER = {"report", "analyze", "sweeps"}  # may import train and below

ALLOWED = {
    **{name: BASE for name in BASE},
    **{name: BASE for name in SIBLINGS},
    "training": BASE | SIBLINGS,
    **{name: BASE | SIBLINGS | TRAIN for name in UPPER},
}


def layer_of(module: str) -> str:
    """'cnnlab.data.loader' -> 'data'; 'cnnlab.errors' -> 'errors'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cnnlab_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("cnnlab.")}
        elif isinstance(node, ast.ImportFrom) and node.module == "cnnlab":
            found |= {f"cnnlab.{a.name}" for a in node.names}  # from cnnlab import data
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cnnlab."):
            found.add(node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    rel = path.relative_to(PACKAGE)
    layer = rel.parts[0].removesuffix(".py")
    if layer in ("cli", "__init__", "__main__"):
        return  # the top: may import anything
    allowed = ALLOWED.get(layer)
    assert allowed is not None, f"{rel}: add its layer to DESIGN.md and this test"
    for module in cnnlab_imports(path):
        target = layer_of(module)
        assert target == layer or target in allowed, f"{rel} imports {module} (upward/sideways)"


def test_every_module_imports():
    import importlib

    for path in MODULES:
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        if name != "cnnlab.__main__":
            importlib.import_module(name)
