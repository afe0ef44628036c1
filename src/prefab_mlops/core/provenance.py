"""Where a model came from: git commit and package versions."""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from prefab_mlops.core.records import Record

PACKAGES = ("prefect", "pandas", "numpy", "scikit-learn", "xgboost", "xgboost-cpu", "pandera",
            "hydra-core", "wandb", "evidently", "prefab-mlops")


@dataclass(frozen=True)
class GitInfo(Record):
    """A git checkout's state: commit, branch, and whether tracked files were modified."""

    commit: str
    branch: str
    dirty: bool


def git_info(root: str | Path) -> GitInfo | None:
    """The state of the git checkout at ``root`` (None if it is not one)."""
    def run(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
        branch = run("rev-parse", "--abbrev-ref", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    return GitInfo(commit=commit, branch=branch, dirty=dirty)


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape a model, plus Python."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
