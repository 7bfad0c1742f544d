"""pymem/ is laid out by concern: imports only run downwards, and no module
imports another package's private (``_``) names."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "pymem"

# Lower layers first; a module may import its own layer and those below.
LAYERS: list[set[str]] = [
    {"models", "errors", "config", "validation", "correlation", "resilience", "transcript"},
    {"context", "db"},
    {"security"},
    {"backends"},
    {"tier"},
    {"telemetry"},
    {"defaults", "aio", "client"},
    {"ops", "integrations"},
    {"__init__", "__main__"},
]


def _unit(module: str) -> str:
    """The layer unit of a dotted module below pymem: its package or top-level module."""
    return module.split(".")[0]


def _rank(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module below pymem, imported names) for each pymem import of ``path``."""
    here = path.relative_to(ROOT).with_suffix("").parts
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = list(here[: len(here) - node.level])
            target = ".".join([*base, *(node.module or "").split(".")]).strip(".")
            out.append((target, [a.name for a in node.names]))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pymem."):
            out.append((node.module.removeprefix("pymem."), [a.name for a in node.names]))
    return out


def test_every_module_has_a_layer() -> None:
    for path in ROOT.rglob("*.py"):
        _rank(_unit(".".join(path.relative_to(ROOT).with_suffix("").parts)))


def test_imports_run_downwards_and_names_stay_private() -> None:
    problems = []
    for path in ROOT.rglob("*.py"):
        mine = _unit(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for target, names in _imports(path):
            if not target:  # from . import x (a sibling module of the package)
                continue
            theirs = _unit(target)
            if _rank(theirs) > _rank(mine):
                problems.append(f"{path.relative_to(ROOT)} imports {target} from a higher layer")
            if theirs != mine:
                private = [n for n in names if n.startswith("_") and n != "__version__"]
                if private:
                    problems.append(
                        f"{path.relative_to(ROOT)} imports private {private} of {target}"
                    )
    assert problems == []
