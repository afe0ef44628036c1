"""Experiment tracking with Weights & Biases, never allowed to break a pipeline.

``mode``: ``offline`` (default; runs are written under the project and can be
uploaded later with ``wandb sync``), ``online`` (needs ``WANDB_API_KEY``) or
``disabled``. Every W&B file (runs, cache, artifacts, config) stays under
``<tracking.dir>/wandb``. ``init`` has a bounded timeout, so a missing network in
online mode fails fast instead of blocking for 90 s.

A W&B failure with a network cause (W&B unreachable, a timeout) is raised as
:class:`~prefab_mlops.core.errors.TrackingTransientError`, which the ``track`` task
retries; any other failure is a plain :class:`~prefab_mlops.core.errors.TrackingError`.
"""

from __future__ import annotations

import errno
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefab_mlops.config import TrackingConfig
from prefab_mlops.core.environ import temporary_environ
from prefab_mlops.core.errors import TrackingError, TrackingTransientError
from prefab_mlops.orchestration.retries import is_transient


@dataclass
class TrackedRun:
    """What was logged: the W&B run id/dir/mode and the logged artifact."""

    mode: str
    run_id: str | None = None
    run_dir: str | None = None
    artifact: str | None = None
    aliases: list[str] = field(default_factory=list)


@dataclass
class RunRecord:
    """Everything one flow run sends to W&B."""

    name: str
    config: dict[str, Any]
    metrics: dict[str, float]
    summary: dict[str, Any]
    plots: dict[str, bytes]
    model_name: str | None = None
    model_bytes: bytes | None = None
    model_metadata: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)
    job_type: str = "train"
    # W&B run group: a search's trials and the run that registered its best share one
    group: str | None = None


# OSError numbers that mean "the network is not there right now", not "wrong setup".
_NETWORK_ERRNOS = frozenset(getattr(errno, name) for name in (
    "ENETDOWN", "ENETUNREACH", "ENETRESET", "EHOSTDOWN", "EHOSTUNREACH", "ETIMEDOUT",
    "ECONNABORTED", "ECONNRESET", "ECONNREFUSED") if hasattr(errno, name))


def _is_network_failure(exc: BaseException) -> bool:
    """True if ``exc``, or an exception it wraps, is a network failure worth a retry.

    Transient: ``wandb.errors.CommError`` (W&B could not be reached or timed out;
    not its ``AuthenticationError`` subclass, a wrong key stays wrong), everything
    :func:`prefab_mlops.orchestration.retries.is_transient` accepts (``ConnectionError``,
    ``TimeoutError``, socket errors) and ``OSError`` with a network errno.
    """
    from wandb.errors import AuthenticationError, CommError

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, AuthenticationError):
            return False
        if isinstance(cur, CommError) or is_transient(cur):
            return True
        if isinstance(cur, OSError) and cur.errno in _NETWORK_ERRNOS:
            return True
        wrapped = getattr(cur, "exc", None)  # CommError keeps its cause here
        todo += [cur.__cause__, cur.__context__,
                 wrapped if isinstance(wrapped, BaseException) else None]
    return False


def wandb_root(cfg: TrackingConfig) -> Path:
    return Path(cfg.dir) / "wandb"


@contextmanager
def _wandb_env(cfg: TrackingConfig) -> Iterator[Path]:
    """Point every W&B directory under the project for the duration of a run."""
    root = wandb_root(cfg)
    env = {
        "WANDB_DIR": str(Path(cfg.dir)),
        "WANDB_CACHE_DIR": str(root / ".cache"),
        "WANDB_DATA_DIR": str(root / ".data"),
        "WANDB_CONFIG_DIR": str(root / ".config"),
        "WANDB_ARTIFACT_DIR": str(root / ".artifacts"),
        "WANDB_SILENT": "true",
    }
    for p in env.values():
        if p.startswith("/"):
            Path(p).mkdir(parents=True, exist_ok=True)
    with temporary_environ(env):
        yield root


def log_to_wandb(cfg: TrackingConfig, record: RunRecord) -> TrackedRun:
    """Log one run (config, metrics, plots, model artifact with aliases) to W&B.

    Raises:
        TrackingTransientError: W&B failed for a network reason; worth a retry.
        TrackingError: W&B failed otherwise; callers only warn about it.
    """
    if cfg.mode == "disabled":
        return TrackedRun(mode="disabled")
    try:
        import wandb
    except ImportError as exc:  # pragma: no cover - wandb is a dependency
        raise TrackingError(f"wandb is not importable: {exc}",
                            fix="pip install wandb, or set tracking.mode=disabled") from None
    try:
        with _wandb_env(cfg):
            settings = wandb.Settings(init_timeout=cfg.init_timeout_s, silent=True,
                                      console="off", x_disable_stats=True)
            run = wandb.init(project=cfg.project, entity=cfg.entity, mode=cfg.mode,
                             dir=cfg.dir, name=record.name, job_type=record.job_type,
                             group=record.group,
                             config=record.config, tags=list(cfg.tags), settings=settings,
                             reinit="create_new")
            try:
                run.log({k: v for k, v in record.metrics.items()})
                for k, v in record.summary.items():
                    run.summary[k] = v
                with tempfile.TemporaryDirectory(dir=wandb_root(cfg)) as tmp:
                    images = {}
                    for name, png in record.plots.items():
                        path = Path(tmp) / Path(name).name
                        path.write_bytes(png)
                        images[f"plots/{Path(name).stem}"] = wandb.Image(str(path))
                    if images:
                        run.log(images)
                    artifact_name = None
                    if cfg.log_model and record.model_bytes and record.model_name:
                        mpath = Path(tmp) / "model.pkl"
                        mpath.write_bytes(record.model_bytes)
                        art = wandb.Artifact(record.model_name, type="model",
                                             metadata=record.model_metadata)
                        art.add_file(str(mpath))
                        run.log_artifact(art, aliases=list(record.aliases))
                        artifact_name = record.model_name
                    tracked = TrackedRun(mode=cfg.mode, run_id=run.id, run_dir=run.dir,
                                         artifact=artifact_name, aliases=list(record.aliases))
            finally:
                run.finish()
        return tracked
    except TrackingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any W&B failure becomes a warning upstream
        message = f"W&B logging failed ({type(exc).__name__}: {exc})"
        if _is_network_failure(exc):
            raise TrackingTransientError(
                message, fix="W&B could not be reached; the track task retries by itself "
                "(orchestration.tasks.track.retries). If it persists, check the network and "
                "WANDB_BASE_URL, or set tracking.mode=offline or disabled.") from None
        raise TrackingError(message, fix="Check WANDB_API_KEY for online mode, or set "
                            "tracking.mode=offline or disabled.") from None
