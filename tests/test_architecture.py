"""The layer map of the README's Architecture section, enforced.

* every module of the distribution has exactly one import name (``prefab_mlops.*``);
  nothing is importable under a generic top-level name such as ``tasks`` or ``flows``;
* layers point one way: flows -> tasks -> core; the model server runtime
  (``prefab_mlops.serve`` and ``prefab_mlops.core``) imports neither prefect nor
  hydra/omegaconf, evidently or wandb, statically or at run time.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import prefab_mlops

REPO = Path(__file__).resolve().parents[1]

# layer -> the prefab_mlops layers it may import (itself included)
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "serve": {"core", "serve"},
    "config": {"core", "config"},
    "orchestration": {"core", "config", "orchestration"},
    "datasets": {"core", "config", "datasets"},
    "partitions": {"core", "config", "partitions"},  # the Dask engine's machinery
    "tracking": {"core", "config", "orchestration", "tracking"},
    "tasks": {"core", "config", "orchestration", "datasets", "partitions", "tracking", "tasks"},
    "flows": {"core", "config", "orchestration", "datasets", "partitions", "tracking", "tasks",
              "flows"},
    "scaffold": {"core", "config", "datasets", "scaffold"},
    "cli": {"core", "config", "scaffold", "cli"},
    "testing": {"core", "config", "orchestration", "datasets", "testing"},
    "conf": set(),  # package data: the stock config groups
    "__init__": set(),
}
# Deliberate exceptions, each guarded where it is imported.
EXCEPTIONS = {
    # `python -m prefab_mlops.serve --config-dir conf` reads a project's conf/ when the
    # [pipeline] extra is installed; with [serve] alone it says to pass --registry/--model.
    ("prefab_mlops.serve.__main__", "config"),
    # `prefab train|monitor|score` hand over to prefab_mlops.flows.cli, which checks the
    # config before it imports a flow (tests/flows/test_cli.py: no prefect before that).
    ("prefab_mlops.cli", "flows"),
    # Stand-in training runs that promote through the real promote task, shared by the
    # promotion tests and `make bench-reliability` (never imported by library code).
    ("prefab_mlops.testing.promotions", "tasks"),
}
# A saved prefect-aws credentials block is loaded only when storage.s3.credentials_block
# names one (a pipeline setting); the server reads S3 credentials from the environment.
SERVER_EXCEPTIONS = {("prefab_mlops.core.storage", "prefect_aws")}
SERVER_FORBIDDEN = ("prefect", "prefect_aws", "hydra", "omegaconf", "evidently", "wandb",
                    "pandera", "matplotlib")
OLD_NAMES = ("tasks", "flows", "prefab_core", "prefab_serve", "scripts")


def _modules() -> dict[str, Path]:
    """Every module of the distribution: import name -> source file."""
    out: dict[str, Path] = {}
    roots = {"prefab_mlops": Path(prefab_mlops.__file__).parent,
             "prefab_mlops.tasks": REPO / "tasks", "prefab_mlops.flows": REPO / "flows"}
    for prefix, root in roots.items():
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == "prefab_mlops" and parts[:1] in (["tasks"], ["flows"]):
                continue
            out[name] = path
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


class TestOneNamespace:
    def test_the_tree_maps_onto_the_namespace(self) -> None:
        mods = _modules()
        assert {"prefab_mlops.tasks.train", "prefab_mlops.flows.training",
                "prefab_mlops.serve.app", "prefab_mlops.core.registry"} <= set(mods)
        assert not (REPO / "prefab_core").exists() and not (REPO / "prefab_serve").exists()

    def test_nothing_imports_a_generic_top_level_name(self) -> None:
        offenders = {f"{name} imports {imp}" for name, path in _modules().items()
                     for imp in _imports(path) if imp.split(".")[0] in OLD_NAMES}
        assert not offenders

    def test_every_module_has_exactly_one_import_name(self) -> None:
        code = (
            "import importlib, json, sys\n"
            f"names = {sorted(_modules())!r}\n"
            "for n in names:\n"
            "    importlib.import_module(n)\n"
            "files = {}\n"
            "for n, m in list(sys.modules.items()):\n"
            "    f = getattr(m, '__file__', None)\n"
            "    if f and ('prefab_mlops' in n or n.split('.')[0] in %r):\n"
            "        files.setdefault(f, []).append(n)\n"
            "print(json.dumps(files))\n" % (OLD_NAMES,))
        res = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True,
                             text=True, check=True)
        files: dict[str, list[str]] = json.loads(res.stdout.strip().splitlines()[-1])
        assert len(files) >= len(_modules()) - 5
        twice = {f: names for f, names in files.items() if len(names) > 1}
        assert not twice
        assert not [n for names in files.values() for n in names
                    if n.split(".")[0] in OLD_NAMES]


class TestLayers:
    def test_layers_point_one_way(self) -> None:
        wrong = []
        for name, path in _modules().items():
            layer = _layer(name)
            allowed = ALLOWED[layer]
            for imp in _imports(path):
                if imp.split(".")[0] != "prefab_mlops" or imp == "prefab_mlops":
                    continue
                target = _layer(imp)
                if target not in allowed and (name, target) not in EXCEPTIONS:
                    wrong.append(f"{name} ({layer}) imports {imp} ({target})")
        assert not wrong

    def test_tasks_never_import_flows(self) -> None:
        for name, path in _modules().items():
            if _layer(name) == "tasks":
                assert not [i for i in _imports(path) if i.startswith("prefab_mlops.flows")]

    @pytest.mark.parametrize("layer", ["core", "serve"])
    def test_server_runtime_imports_no_training_stack_statically(self, layer: str) -> None:
        wrong = [f"{name} imports {imp}" for name, path in _modules().items()
                 if _layer(name) == layer for imp in _imports(path)
                 if imp.split(".")[0] in SERVER_FORBIDDEN
                 and (name, imp) not in SERVER_EXCEPTIONS]
        assert not wrong

    def test_the_dask_engine_machinery_needs_neither_prefect_nor_the_dask_extra(self) -> None:
        """``prefab_mlops.partitions`` is at the data layer: no prefect at all, and the
        optional ``[dask]`` extra only inside functions, so every stage module imports
        without it."""
        path = _modules()["prefab_mlops.partitions"]
        assert not [i for i in _imports(path) if i.split(".")[0] == "prefect"]
        top = ast.parse(path.read_text()).body
        at_import = {a.name for n in top if isinstance(n, ast.Import) for a in n.names} | {
            n.module for n in top if isinstance(n, ast.ImportFrom) and n.module}
        assert not {i for i in at_import
                    if i.split(".")[0] in ("dask", "distributed", "xgboost", "s3fs")}

    def test_server_runtime_imports_no_training_stack_at_run_time(self) -> None:
        """Build the app and load a server worker's modules in a fresh interpreter."""
        code = (
            "import sys, json\n"
            "import prefab_mlops.serve, prefab_mlops.serve.server, prefab_mlops.serve.app\n"
            "import prefab_mlops.serve.__main__, prefab_mlops.core.registry\n"
            "import prefab_mlops.core.transformers, prefab_mlops.serve.fastpath\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n")
        res = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True,
                             text=True, check=True)
        loaded = set(json.loads(res.stdout.strip().splitlines()[-1]))
        assert "fastapi" in loaded and "prefab_mlops" in loaded
        assert not loaded & set(SERVER_FORBIDDEN)
