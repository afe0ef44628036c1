"""Throw-away projects for end-to-end tests and benchmarks.

A throw-away project is a copy of this repository's ``conf/`` (without its
git-ignored ``local/`` settings) plus a fresh ``conf/local/default.yaml`` that
points the data group at the project's own file, turns tracking off and trains a
small model. ``prefab_mlops.config.load_config(config_dir=...)`` or
``PREFAB_CONFIG_DIR`` then runs the real flows against it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# The repository root (src/prefab_mlops/testing/projects.py -> three levels up), whose
# conf/ a throw-away project copies. A source checkout is assumed (editable install).
REPO = Path(__file__).resolve().parents[3]

#: Settings every throw-away project gets unless the caller overrides them.
SMALL = {"tracking": {"mode": "disabled"}, "model": {"n_estimators": 60}}


def make_project(root: Path, data_uri: str | Path | None = None,
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write a throw-away project under ``root``.

    Args:
        root: Project directory to create. It gets ``conf/`` and, when ``data_uri``
            is a ``Path``, that file's parent directory.
        data_uri: The ``data.uri`` setting (data group): a ``Path`` to a local file,
            which the caller writes, or any URI string. Defaults to
            ``root/data/flights.csv``.
        overrides: Per-group settings merged over :data:`SMALL`, e.g.
            ``{"evaluate": {"plots": False}}``.

    Returns:
        The project's config directory, ``root/conf``.

    Examples:
        >>> conf = make_project(tmp / "proj", overrides={"evaluate": {"plots": False}})
        >>> load_config([], "pipeline", conf).typed.tracking.mode
        'disabled'
    """
    if data_uri is None:
        data_uri = root / "data" / "flights.csv"
    settings: dict[str, dict[str, Any]] = {"data": {"uri": str(data_uri)}}
    for group, values in [*SMALL.items(), *(overrides or {}).items()]:
        settings.setdefault(group, {}).update(values)

    conf = root / "conf"
    shutil.copytree(REPO / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    if isinstance(data_uri, Path):
        data_uri.parent.mkdir(parents=True, exist_ok=True)
    (conf / "local" / "default.yaml").write_text(
        "# @package _global_\n" + yaml.safe_dump(settings, sort_keys=False))
    return conf
