"""``prefab reproduce MODEL@VERSION``: train a registered version again from its record.

A version records its data snapshot, its resolved config, the git commit and the
package versions it was trained with (see :mod:`prefab_mlops.tasks.register`). This
command re-runs the stock training flow on exactly that: the snapshot (which already
holds the prepared rows, so no preparation is applied again) and the recorded config,
into a throw-away registry under a temporary directory. Nothing in the project's
registry, aliases or W&B project changes. It then compares the new model file's
sha256 with the recorded one and, when they differ, names the inputs that differ:
data, config, code (git commit, uncommitted changes) or package versions.

Code: when the project's git checkout is not at the recorded commit (or has uncommitted
changes), that commit is checked out in a temporary git worktree and training runs
there, in a fresh Python process whose working directory is the project's directory in
that worktree: the project's own modules (steps, ``_target_`` code under the project) are
the recorded commit's. The framework and the other packages are the ones installed now;
the report names every package whose version differs from the recorded one. When the
recorded commit is not in the repository, training runs with the current code and the
report says so. Either way training runs in a fresh Python process working in the
project's directory (of the worktree, or the project's own), so that the project's
modules import as they do when its flows run, wherever the command was started.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from prefab_mlops.config import ReadConfig, WindowConfig, as_plain, load_config
from prefab_mlops.core.errors import RegistryError
from prefab_mlops.core.manifest import ModelVersion
from prefab_mlops.core.provenance import git_info, package_versions
from prefab_mlops.core.storage import StorageConfig
from prefab_mlops.tasks.registry import open_registry

#: Data settings that prepare a source; a snapshot is already prepared.
_PREPARED = {"format": "parquet", "dropna": [], "derive": {}, "columns": None,
             "window": as_plain(WindowConfig()), "read": as_plain(ReadConfig()),
             "sample_rows": None, "snapshot": False}


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """What ``prefab reproduce`` found."""

    model_name: str
    version: int
    recorded_sha256: str
    reproduced_sha256: str
    differences: dict[str, list[str]]
    #: Where the project's code came from: the working tree, or the recorded commit
    #: checked out in a temporary worktree.
    code: str = "the working tree"

    @property
    def identical(self) -> bool:
        return self.recorded_sha256 == self.reproduced_sha256

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "identical": self.identical}

    def render(self) -> str:
        head = f"{self.model_name} v{self.version}: "
        if self.identical:
            text = head + f"reproduced byte-identical (sha256 {self.recorded_sha256[:12]}…)"
        else:
            text = (head + f"NOT identical: recorded sha256 {self.recorded_sha256[:12]}…, "
                    f"reproduced {self.reproduced_sha256[:12]}…")
        text += f"\n  code: {self.code}"
        if self.differences:
            text += "\n" + "\n".join(f"  {kind} differs: {'; '.join(items)}"
                                     for kind, items in self.differences.items())
        elif not self.identical:
            text += ("\n  data, config, code and package versions are as recorded: the "
                     "estimator is not deterministic with these settings (threads, seed)")
        return text


def replay_config(mv: ModelVersion, workdir: Path) -> Path:
    """A conf/ directory whose ``pipeline.yaml`` is the version's resolved config, with
    its data read from the snapshot and every write going under ``workdir``."""
    if not mv.config:
        raise RegistryError(f"{mv.label} has no recorded config to reproduce it from.")
    snapshot = mv.data.snapshot_uri
    if not snapshot:
        raise RegistryError(
            f"{mv.label} has no data snapshot, so the exact rows it was trained on are "
            "unknown.", fix="Keep data.snapshot=true (the default) for versions you may "
            "need to reproduce.")
    cfg = dict(mv.config)
    cfg["data"] = {**cfg["data"], **_PREPARED, "uri": snapshot}
    root = workdir / "project"
    cfg["paths"] = {"root": str(root), "data_dir": str(root / "data"),
                    "registry_dir": str(root / "registry"),
                    "cache_dir": str(root / ".cache"), "output_dir": str(root / "outputs"),
                    "tracking_dir": str(root)}
    cfg["register"] = {**cfg["register"], "root": str(root / "registry"), "aliases": []}
    # the snapshot may live on S3; the throw-away registry is local
    cfg["storage"] = {**cfg["storage"], "kind": "local"}
    cfg["tracking"] = {**cfg["tracking"], "mode": "disabled"}
    conf = workdir / "conf"
    conf.mkdir(parents=True)
    (conf / "pipeline.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return conf


def differences(mv: ModelVersion, new: ModelVersion, project_root: str,
                ran_commit: str | None = None) -> dict[str, list[str]]:
    """Which recorded inputs differ now: data, config, code, packages.

    Args:
        mv: The recorded version.
        new: The version the reproduction registered.
        project_root: The project's directory (``paths.root``), for its git state.
        ran_commit: The commit whose clean checkout the reproduction ran (a temporary
            worktree), or None when it ran the working tree at ``project_root``.
    """
    out: dict[str, list[str]] = {}
    if new.data.rows != mv.data.rows:
        out["data"] = [f"{new.data.rows} rows read back from the snapshot, "
                       f"{mv.data.rows} recorded"]
    recorded_params = {"estimator": mv.estimator, **mv.params}
    new_params = {"estimator": new.estimator, **new.params}
    if recorded_params != new_params:
        keys = sorted(k for k in set(recorded_params) | set(new_params)
                      if recorded_params.get(k) != new_params.get(k))
        out["config"] = [f"estimator parameter {k}: recorded {recorded_params.get(k)!r}, "
                         f"now {new_params.get(k)!r}" for k in keys]
    code: list[str] = []
    now = git_info(project_root) if ran_commit is None else None
    if ran_commit is not None:
        if mv.git is None or ran_commit != mv.git.commit:
            code.append(f"ran commit {ran_commit[:12]}, recorded "
                        f"{mv.git.commit[:12] if mv.git else 'none'}")
    elif mv.git is not None and (now is None or now.commit != mv.git.commit):
        code.append(f"git commit: recorded {mv.git.commit[:12]}, "
                    f"now {now.commit[:12] if now is not None else 'no git checkout'}"
                    + ("" if now is None else " (the recorded commit is not in this "
                       "repository, so the current code ran)"))
    if mv.git is not None and mv.git.dirty:
        code.append("the recorded run had uncommitted changes")
    if now is not None and now.dirty:
        code.append("the working tree has uncommitted changes now")
    if code:
        out["code"] = code
    current = package_versions()
    pkgs = [f"{name}: recorded {ver}, now {current.get(name, 'not installed')}"
            for name, ver in sorted(mv.packages.items()) if current.get(name) != ver]
    if pkgs:
        out["packages"] = pkgs
    return out


def _git(cwd: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          timeout=120, check=False)


@contextmanager
def recorded_code(mv: ModelVersion, project_root: str, workdir: Path
                  ) -> Iterator[tuple[Path, str] | None]:
    """The project's directory in a temporary worktree at the recorded commit, and that
    commit; None when the working tree already is that commit, unmodified, or when the
    commit is unknown or not in the repository (the current code then runs).

    The worktree is removed on exit.
    """
    now = git_info(project_root)
    if mv.git is None or now is None or (now.commit == mv.git.commit and not now.dirty):
        yield None
        return
    top = _git(project_root, "rev-parse", "--show-toplevel").stdout.strip()
    if not top or _git(top, "cat-file", "-e", f"{mv.git.commit}^{{commit}}").returncode:
        yield None
        return
    tree = workdir / "code"
    added = _git(top, "worktree", "add", "--detach", str(tree), mv.git.commit)
    if added.returncode:
        raise RegistryError(
            f"Could not check out {mv.label}'s commit {mv.git.commit[:12]} in a temporary "
            f"worktree: {added.stderr.strip()[-500:]}",
            fix="Check that `git worktree add` works in this repository (disk space, "
            "permissions), or check out the commit yourself and run the command there.")
    try:
        yield tree / Path(project_root).resolve().relative_to(Path(top).resolve()), \
            mv.git.commit
    finally:
        _git(top, "worktree", "remove", "--force", str(tree))
        _git(top, "worktree", "prune")


def _train_in(project_dir: Path, conf: Path, summary: Path) -> dict[str, Any]:
    """Run the training flow on ``conf`` in a fresh process working in ``project_dir``
    (so the project's modules there are the ones imported), against the Prefect API this
    process uses (if any)."""
    from prefect.settings import get_current_settings

    env = dict(os.environ)
    api = get_current_settings().api.url
    if api:
        env["PREFECT_API_URL"] = str(api)
    res = subprocess.run([sys.executable, "-m", "prefab_mlops.flows.reproduce", "--train",
                          str(conf), "--summary", str(summary)], cwd=project_dir, env=env,
                         capture_output=True, text=True, check=False)
    if res.returncode:
        raise RegistryError(
            f"Training with the recorded commit's code (in {project_dir}) failed:\n"
            f"{(res.stderr or res.stdout).strip()[-3000:]}",
            fix="Read the error above: the recorded commit may need other packages than "
            "the ones installed now (see the version's packages with prefab registry show).")
    loaded: dict[str, Any] = json.loads(summary.read_text())
    return loaded


def reproduce(model: str, version: int, overrides: list[str] | None = None,
              config_dir: str | None = None, keep: str | None = None) -> Reproduction:
    """Train ``model`` v``version`` again from its record and compare the model files.

    Args:
        model: Registered model name.
        version: Version number.
        overrides: Hydra overrides for finding the project's registry (e.g. storage=s3).
        config_dir: The project's ``conf/``.
        keep: Keep the reproduction's files in this directory (default: removed).
    """
    loaded = load_config(overrides, "pipeline", config_dir)
    project = loaded.typed
    registry = open_registry(project.register, project.storage)
    mv = registry.get_version(model, version)
    with tempfile.TemporaryDirectory(prefix="prefab-reproduce-", dir=keep) as tmp:
        conf = replay_config(mv, Path(tmp))
        with recorded_code(mv, project.paths.root, Path(tmp)) as checkout:
            if checkout is None:
                # in the project's directory, where its own modules (steps) import from
                summary = _train_in(loaded.config_dir.parent, conf, Path(tmp) / "summary.json")
                ran_commit, code = None, "the working tree"
            else:
                project_dir, ran_commit = checkout
                summary = _train_in(project_dir, conf, Path(tmp) / "summary.json")
                code = (f"the recorded commit {ran_commit[:12]}, checked out in a temporary "
                        "git worktree")
        replay = load_config(config_dir=str(conf)).typed
        new = open_registry(replay.register, StorageConfig(kind="local")).get_version(
            summary["model_name"], summary["version"])
    return Reproduction(model_name=model, version=version, recorded_sha256=mv.model_sha256,
                        reproduced_sha256=new.model_sha256,
                        differences=differences(mv, new, project.paths.root, ran_commit),
                        code=code)


def _main(argv: list[str] | None = None) -> int:
    """``python -m prefab_mlops.flows.reproduce --train CONF --summary FILE``: the training
    run of a reproduction in its own process (see :func:`_train_in`)."""
    parser = argparse.ArgumentParser(prog="python -m prefab_mlops.flows.reproduce")
    parser.add_argument("--train", required=True, help="the replay's conf/ directory")
    parser.add_argument("--summary", required=True, help="write the run's summary here")
    args = parser.parse_args(argv)
    from prefab_mlops.flows.training import training
    from prefab_mlops.orchestration.runtime import in_process_run

    with in_process_run():
        summary = training(config_dir=args.train, refresh_cache=True)
    Path(args.summary).write_text(json.dumps(summary, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
