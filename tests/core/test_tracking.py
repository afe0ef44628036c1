"""W&B tracking with the real ``wandb`` package, offline: nothing contacts wandb.ai.

The offline run is read back from its ``.wandb`` transaction log (a LevelDB-style
log of protobuf ``Record`` messages), so the tests see exactly what ``wandb sync``
would upload: config, metrics, the model artifact and its aliases.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import io
import pickle
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefab_mlops.config import TrackingConfig
from prefab_mlops.core.errors import TrackingError, TrackingTransientError
from prefab_mlops.orchestration.retries import is_transient
from prefab_mlops.testing.local_prefect import free_port
from prefab_mlops.tracking import RunRecord, TrackedRun, log_to_wandb

HOME_DIRS = [Path.home() / ".cache" / "wandb", Path.home() / ".config" / "wandb",
             Path.home() / ".local" / "share" / "wandb"]
HOME_FILES = [Path.home() / ".netrc"]
MODEL_BYTES = b"pretend this is a pickled pipeline" * 10


def home_listing() -> dict[str, tuple[int, int]]:
    """(mtime, size) of every W&B file in the user's home."""
    out: dict[str, tuple[int, int]] = {}
    for d in HOME_DIRS:
        if d.exists():
            out[str(d)] = (0, 0)
            for p in d.rglob("*"):
                st = p.stat()
                out[str(p)] = (st.st_mtime_ns, st.st_size)
    for f in HOME_FILES:
        if f.exists():
            st = f.stat()
            out[str(f)] = (st.st_mtime_ns, st.st_size)
    return out


@pytest.fixture(autouse=True)
def wandb_session() -> Iterator[None]:
    """Tear W&B down after each test (it reads its settings once per process) and
    check that nothing was written to the user's home."""
    import wandb

    before = home_listing()
    yield
    wandb.teardown()
    after = home_listing()
    assert after == before, f"W&B wrote into the user's home: {sorted(set(after) - set(before))}"


def png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def record(**kw) -> RunRecord:
    base = dict(name="flights-binary-v3", config={"seed": 42, "model": {"n_estimators": 20}},
                metrics={"roc_auc": 0.8123, "f1": 0.5}, summary={"version": 3},
                plots={"roc.png": png()}, model_name="flights-binary",
                model_bytes=MODEL_BYTES, model_metadata={"version": 3, "sha256": "abc123"},
                aliases=["candidate", "production"])
    return RunRecord(**{**base, **kw})


def tracking(tmp_path: Path, **kw) -> TrackingConfig:
    return TrackingConfig(**{"mode": "offline", "project": "prefab-tests",
                             "dir": str(tmp_path / "project"), "init_timeout_s": 30, **kw})


def records(path: Path) -> list:
    """Every protobuf record of an offline run's ``.wandb`` file, in order.

    ``run.finish()`` can return before W&B's service process has flushed this file;
    it is complete once the service is shut down, so this tears W&B down first.
    """
    import wandb
    from wandb.proto import wandb_internal_pb2 as pb

    wandb.teardown()

    block = 32 * 1024
    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, chunk, out = 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        chunk = body if kind in (1, 2) else chunk + body  # FULL/FIRST start a record
        if kind in (1, 4):  # FULL/LAST end one
            rec = pb.Record()
            rec.ParseFromString(chunk)
            out.append(rec)
    return out


def by_type(recs: list, kind: str) -> list:
    return [getattr(r, kind) for r in recs if r.WhichOneof("record_type") == kind]


@pytest.fixture()
def offline_run(tmp_path: Path) -> tuple[TrackedRun, Path, list]:
    cfg = tracking(tmp_path)
    tracked = log_to_wandb(cfg, record())
    runs = sorted((tmp_path / "project" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    logs = list(runs[0].glob("*.wandb"))
    assert len(logs) == 1, logs
    return tracked, runs[0], records(logs[0])


class TestOfflineRun:
    def test_run_is_written_under_the_project(self, tmp_path: Path, offline_run) -> None:
        tracked, run_dir, _ = offline_run

        assert tracked.mode == "offline" and tracked.run_id
        assert run_dir.name.endswith(tracked.run_id)
        assert Path(tracked.run_dir) == run_dir / "files"
        assert (run_dir / f"run-{tracked.run_id}.wandb").is_file()

    def test_config_and_metrics_are_in_the_run(self, offline_run) -> None:
        _, _, recs = offline_run
        import json

        run = by_type(recs, "run")[0]
        assert run.project == "prefab-tests" and run.display_name == "flights-binary-v3"
        config = {u.key: json.loads(u.value_json) for u in run.config.update}
        assert config["seed"] == 42 and config["model"] == {"n_estimators": 20}
        history = {i.nested_key[0]: i.value_json for h in by_type(recs, "history")
                   for i in h.item}
        assert json.loads(history["roc_auc"]) == 0.8123
        assert json.loads(history["f1"]) == 0.5
        summary = {tuple(u.nested_key) or (u.key,): u.value_json
                   for s in by_type(recs, "summary") for u in s.update}
        assert json.loads(summary[("version",)]) == 3

    def test_plots_are_logged_as_images(self, offline_run) -> None:
        _, run_dir, _ = offline_run

        images = list((run_dir / "files" / "media" / "images" / "plots").glob("roc*.png"))
        assert len(images) == 1
        assert images[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class TestModelArtifact:
    def test_artifact_has_the_given_aliases_and_the_model_file(self, offline_run) -> None:
        import json

        tracked, _, recs = offline_run
        arts = by_type(recs, "artifact")

        assert tracked.artifact == "flights-binary"
        assert tracked.aliases == ["candidate", "production"]
        assert len(arts) == 1
        art = arts[0]
        assert (art.name, art.type) == ("flights-binary", "model")
        assert {"candidate", "production"} <= set(art.aliases)
        assert json.loads(art.metadata) == {"version": 3, "sha256": "abc123"}
        [entry] = list(art.manifest.contents)
        assert entry.path == "model.pkl" and entry.size == len(MODEL_BYTES)
        assert entry.digest == base64.b64encode(hashlib.md5(MODEL_BYTES).digest()).decode()

    def test_staged_model_file_stays_inside_the_project(self, tmp_path: Path, offline_run
                                                        ) -> None:
        _, _, recs = offline_run
        [entry] = list(by_type(recs, "artifact")[0].manifest.contents)

        staged = Path(entry.local_path)
        assert staged.is_relative_to(tmp_path / "project" / "wandb")
        assert staged.read_bytes() == MODEL_BYTES  # what `wandb sync` will upload

    def test_no_artifact_without_model_bytes(self, tmp_path: Path) -> None:
        tracked = log_to_wandb(tracking(tmp_path), record(model_bytes=None))

        assert tracked.artifact is None
        [log] = (tmp_path / "project" / "wandb").glob("offline-run-*/*.wandb")
        assert by_type(records(log), "artifact") == []

    def test_no_artifact_when_log_model_is_off(self, tmp_path: Path) -> None:
        tracked = log_to_wandb(tracking(tmp_path, log_model=False), record())

        assert tracked.artifact is None


class TestDisabled:
    def test_disabled_mode_writes_nothing(self, tmp_path: Path) -> None:
        tracked = log_to_wandb(tracking(tmp_path, mode="disabled"), record())

        assert tracked == TrackedRun(mode="disabled")
        assert list(tmp_path.iterdir()) == []


class TestFailure:
    def test_unreachable_online_server_is_a_quick_tracking_error(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("WANDB_MODE", raising=False)
        monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{free_port()}")
        cfg = tracking(tmp_path, mode="online", init_timeout_s=5)

        start = time.monotonic()
        with pytest.raises(TrackingTransientError, match="W&B logging failed") as err:
            log_to_wandb(cfg, record())
        assert time.monotonic() - start < 30
        assert "tracking.mode=offline or disabled" in err.value.fix
        assert isinstance(err.value, TrackingError) and is_transient(err.value)

    def test_invalid_artifact_name_is_a_plain_tracking_error(self, tmp_path: Path) -> None:
        with pytest.raises(TrackingError, match="Invalid name") as err:
            log_to_wandb(tracking(tmp_path), record(model_name="flights/binary"))

        assert not isinstance(err.value, TrackingTransientError)
        assert not is_transient(err.value)


def fail_log_artifact(monkeypatch: pytest.MonkeyPatch, exc: BaseException,
                      times: int = 1) -> dict[str, int]:
    """Make the first ``times`` calls of the real ``Run.log_artifact`` raise ``exc``.

    Everything else (init, log, finish) is the real offline W&B run.
    """
    import wandb

    real = wandb.Run.log_artifact
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc
        return real(self, *args, **kwargs)

    monkeypatch.setattr(wandb.Run, "log_artifact", flaky)
    return calls


def _chained() -> RuntimeError:
    try:
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    except ConnectionResetError as cause:
        try:
            raise RuntimeError("upload aborted") from cause
        except RuntimeError as exc:
            return exc


def _comm_errors() -> list[BaseException]:
    from wandb.errors import CommError

    return [CommError("Timed out while retrying: Post /graphql"),
            CommError("upload failed", exc=ConnectionResetError())]


class TestTransientCause:
    @pytest.mark.parametrize("cause", [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        TimeoutError("read timed out"),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
        _chained(),
        *_comm_errors(),
    ], ids=["refused", "timeout", "net-unreachable", "chained-reset", "comm-timeout",
            "comm-wrapping-reset"])
    def test_network_cause_is_transient_and_retryable(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            cause: BaseException) -> None:
        fail_log_artifact(monkeypatch, cause)

        with pytest.raises(TrackingTransientError, match="W&B logging failed") as err:
            log_to_wandb(tracking(tmp_path), record())

        assert isinstance(err.value, TrackingError)
        assert is_transient(err.value)
        assert "retries by itself" in err.value.fix
        restored = pickle.loads(pickle.dumps(err.value))  # as Prefect stores it
        assert type(restored) is TrackingTransientError and is_transient(restored)

    @pytest.mark.parametrize("cause", [
        PermissionError(errno.EACCES, "Permission denied"),
        ValueError("bad metadata"),
    ], ids=["permission", "value"])
    def test_other_cause_is_not_transient(self, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          cause: BaseException) -> None:
        fail_log_artifact(monkeypatch, cause)

        with pytest.raises(TrackingError) as err:
            log_to_wandb(tracking(tmp_path), record())

        assert type(err.value) is TrackingError
        assert not is_transient(err.value)

    def test_authentication_error_is_not_transient(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        from wandb.errors import AuthenticationError  # a CommError, but a wrong key stays wrong

        fail_log_artifact(monkeypatch, AuthenticationError("API key is invalid"))

        with pytest.raises(TrackingError) as err:
            log_to_wandb(tracking(tmp_path), record())

        assert type(err.value) is TrackingError
        assert not is_transient(err.value)


def task_run(task_run_id) -> object:
    """The task run as the Prefect API records it, once it is in a final state."""
    from prefect import get_client

    deadline = time.monotonic() + 15
    while True:
        with get_client(sync_client=True) as client:
            tr = client.read_task_run(task_run_id)
        if (tr.state and tr.state.is_final()) or time.monotonic() > deadline:
            return tr
        time.sleep(0.2)


def run_track(orch, rec: RunRecord, cfg: TrackingConfig) -> tuple[object, object]:
    """Run the ``track`` task in a flow with retries from ``conf/orchestration``, as the
    training flow does. Returns (result or exception, task run)."""
    from prefect import flow

    from prefab_mlops.orchestration.runtime import configure
    from prefab_mlops.tasks.track import track

    @flow(name="track-retries")
    def tracking_flow():
        state = configure(track, "track", orch)(rec, cfg, return_state=True)
        return state.result(raise_on_failure=False), state.state_details.task_run_id

    result, task_run_id = tracking_flow()
    return result, task_run(task_run_id)


@pytest.mark.usefixtures("prefect_harness")
class TestTrackTaskRetries:
    def test_transient_failure_is_retried_and_succeeds(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, load) -> None:
        orch = load("orchestration.tasks.track.retry_delay_seconds=[0]").typed.orchestration
        assert orch.tasks["track"].retries >= 1
        calls = fail_log_artifact(
            monkeypatch, ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))

        result, tr = run_track(orch, record(), tracking(tmp_path))

        assert isinstance(result, TrackedRun) and result.artifact == "flights-binary"
        assert calls["n"] == 2
        assert tr.run_count == 2 and tr.state.is_completed()

    def test_non_transient_failure_fails_at_once(self, tmp_path: Path, load) -> None:
        orch = load("orchestration.tasks.track.retry_delay_seconds=[0]").typed.orchestration
        assert orch.tasks["track"].retries >= 1

        result, tr = run_track(orch, record(model_name="flights/binary"), tracking(tmp_path))

        assert type(result) is TrackingError and "Invalid name" in str(result)
        assert tr.run_count == 1 and tr.state.is_failed()
        assert len(list((tmp_path / "project" / "wandb").glob("offline-run-*"))) == 1
