"""The house in layers: each package imports only the layers beneath it, so the tree shows the architecture.

- base (``ragpress.base``): schema, settings, model registry and loading, the index binding, the database,
  input limits. Imports no other ragpress package.
- scoring (``ragpress.scoring``): BM25, reciprocal-rank fusion, logistic fusion, span selection. Imports the base.
- components (``ragpress.indexers``, ``rerankers``, ``pruners``, ``generators``): import the base and scoring,
  never each other.
- application (``ragpress.pipelines``, ``api``, ``workers``, and ``ragpress``'s own CLI, service and client):
  anything above.
- offline (``ragpress.training``, ``ragpress.bench``): training, fitting, calibration and benchmarks; they
  may import anything, and nothing else imports them.

Imports are read with ``ast`` from the source, function-level (lazy) imports included: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
# The folder each installed package comes from (pyproject.toml's package-dir).
FOLDERS = {"ragpress": "ragpress", "ragpress.indexers": "indexers", "ragpress.pipelines": "pipelines",
           "ragpress.rerankers": "rerankers", "ragpress.pruners": "pruners", "ragpress.generators": "generators",
           "ragpress.api": "api", "ragpress.workers": "workers", "ragpress.bench": "bench",
           "ragpress.training": "training"}
COMPONENTS = ("ragpress.indexers", "ragpress.rerankers", "ragpress.pruners", "ragpress.generators")
OFFLINE = ("ragpress.training", "ragpress.bench")
RANK = {"ragpress.base": 0, "ragpress.scoring": 1, **dict.fromkeys(COMPONENTS, 2),
        **dict.fromkeys(("ragpress.pipelines", "ragpress.api", "ragpress.workers", "ragpress"), 3),
        **dict.fromkeys(OFFLINE, 4)}


def package_of(module: str) -> str:
    """The layer-bearing package a ``ragpress...`` module belongs to."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in RANK else "ragpress"


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in FOLDERS.items():
        base = REPO / folder
        for path in base.rglob("*.py"):
            relative = path.relative_to(base).with_suffix("")
            name = ".".join((package, *relative.parts)).removesuffix(".__init__")
            if package == "ragpress" or not name.startswith("ragpress.ragpress"):
                found[name] = path
    return found


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def edges() -> list[tuple[str, str, str]]:
    """(importing module, imported module, why it is wrong) for every import that breaks the layering."""
    wrong = []
    for name, path in sorted(modules().items()):
        source = package_of(name)
        for target in sorted(t for t in imports_of(path) if t == "ragpress" or t.startswith("ragpress.")):
            destination = package_of(target)
            if destination == source or target == "ragpress":
                continue
            if destination in OFFLINE and source not in OFFLINE:  # offline code may import anything
                wrong.append((name, target, "nothing outside the offline packages imports them"))
            elif RANK[destination] > RANK[source]:
                wrong.append((name, target, "runs up the layers"))
            elif source in COMPONENTS and destination in COMPONENTS:
                wrong.append((name, target, "one component package imports another"))
    return wrong


def test_every_source_file_is_in_a_layer() -> None:
    assert all(package_of(name) in RANK for name in modules())
    assert "ragpress.base.schema" in modules()


def test_no_import_runs_up_the_layers_or_across_component_packages() -> None:
    assert edges() == []


def test_no_top_level_import_bypasses_the_namespace() -> None:
    """Installed, only ``ragpress`` exists; an ``import indexers`` works only from a checkout."""
    stray = {(name, target) for name, path in modules().items() for target in imports_of(path)
             if target.split(".")[0] in set(FOLDERS.values()) - {"ragpress"}}
    assert stray == set()
