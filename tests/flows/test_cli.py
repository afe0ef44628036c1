"""The flows' command lines: a bad config fails before Prefect starts; a failed run ends
with its cause and fix, not tracebacks, unless ``--debug``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]


def run_flow(module: str, *args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL",)}
    # the session's offline environment (tests/conftest.py) is inherited
    env.update(PREFECT_HOME=str(home), PREFAB_CONFIG_DIR=str(REPO / "conf"))
    return subprocess.run([sys.executable, "-m", f"prefab_mlops.flows.{module}", *args],
                          cwd=home.parent, env=env, capture_output=True, text=True,
                          timeout=300)


class TestConfigErrorsComeFirst:
    @pytest.mark.parametrize("module", ["training", "monitoring", "batch_inference"])
    def test_bad_override_fails_before_prefect_starts(self, module: str,
                                                      tmp_path: Path) -> None:
        home = tmp_path / "prefect-home"
        res = run_flow(module, "model=xgbost", f"paths.root={tmp_path}", home=home)
        assert res.returncode == 2, res.stderr
        assert "Could not find 'model/xgbost'" in res.stderr
        assert "xgboost_regressor" in res.stderr  # the valid options are listed
        assert "Traceback" not in res.stderr + res.stdout
        # no flow run and no temporary Prefect server: its database was never created
        assert not (home / "prefect.db").exists()


class TestPrefabFlowCommands:
    """``prefab train|monitor|score`` check the config before importing any flow."""

    PROBE = ("import sys\n"
             "from prefab_mlops.cli import main\n"
             "code = main(sys.argv[1:])\n"
             "heavy = sorted(m for m in ('prefect', 'xgboost', 'sklearn', 'evidently', 'wandb')"
             " if m in sys.modules)\n"
             "print('loaded:', heavy)\n"
             "sys.exit(code)\n")

    def probe(self, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL",)}
        env.update(PREFECT_HOME=str(tmp_path / "prefect-home"),
                   PREFAB_CONFIG_DIR=str(REPO / "conf"))
        return subprocess.run([sys.executable, "-c", self.PROBE, *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)

    @pytest.mark.parametrize("command", ["train", "monitor", "score"])
    def test_bad_override_fails_without_loading_prefect_or_the_data_stack(
            self, command: str, tmp_path: Path) -> None:
        res = self.probe(command, "features=nonexistent", f"paths.root={tmp_path}",
                         tmp_path=tmp_path)
        assert res.returncode == 2, res.stderr
        assert "Could not find 'features/nonexistent'" in res.stderr
        assert "linear" in res.stderr  # the valid options are listed
        assert "\nfix: " in res.stderr and "Traceback" not in res.stderr
        assert "loaded: []" in res.stdout

    def test_help_lists_the_flow_commands(self, tmp_path: Path) -> None:
        res = self.probe("--help", tmp_path=tmp_path)
        assert res.returncode == 0
        assert all(c in res.stdout for c in ("train", "monitor", "score", "registry"))


@pytest.mark.slow
class TestFailedRunsAreShort:
    ARGS = ("data.uri=/nonexistent/flights.csv", "tracking=disabled")

    def test_cause_and_fix_without_traceback(self, tmp_path: Path) -> None:
        res = run_flow("training", *self.ARGS, f"paths.root={tmp_path}",
                       home=tmp_path / "prefect-home")
        out = res.stdout + res.stderr
        assert res.returncode == 2
        assert "error: DataSourceNotFound: " in res.stderr and "/nonexistent/flights.csv" in out
        assert "\nfix: " in res.stderr
        assert "Traceback" not in out
        assert "cache key" not in out  # a missing file is not a caching problem
        # one line per failed task and flow run, the resolved config, then the cause
        lines = [ln for ln in out.splitlines() if ln.startswith(("error:", "fix:"))]
        assert lines == [ln for ln in res.stderr.splitlines() if ln.startswith(("error:",
                                                                               "fix:"))]
        assert len([ln for ln in out.splitlines() if "| ERROR" in ln]) <= 3, out

    def test_debug_shows_the_traceback(self, tmp_path: Path) -> None:
        res = run_flow("training", *self.ARGS, f"paths.root={tmp_path}", "--debug",
                       home=tmp_path / "prefect-home")
        assert res.returncode != 0
        assert "Traceback" in res.stdout + res.stderr


def bad_files(frame: pd.DataFrame, directory: Path) -> dict[str, tuple[Path, list[str]]]:
    """Real flights rows in the kinds of bad file the fuzz tests generate:
    name -> (file, override, what stderr must name)."""
    rows = frame.head(3000)
    cyrillic = rows.assign(dest=rows["dest"].where(rows.index % 7 > 0, "Москва"))
    cyrillic.to_csv(directory / "cyrillic.csv", index=False, encoding="cp1251")
    rows.to_csv(directory / "semicolon.csv", index=False, sep=";")
    rows.to_parquet(directory / "really-parquet.csv", index=False)
    rows.assign(distance="far").to_csv(directory / "text-distance.csv", index=False)
    (directory / "binary.csv").write_bytes(bytes(range(256)) * 40)
    return {
        "cp1251": (directory / "cyrillic.csv", [],
                   ["is not UTF-8 text", "Windows-1252", "data.read.encoding"]),
        "wrong separator": (directory / "semicolon.csv", ["data.read.sep=comma"],
                            ["has one column when read as", "data.read.sep=semicolon"]),
        "parquet named csv": (directory / "really-parquet.csv", [],
                              ["is a Parquet file", "data.format=parquet"]),
        "contract": (directory / "text-distance.csv", [],
                     ["column 'distance': dtype number", "conf/validate"]),
        "binary": (directory / "binary.csv", [], ["is binary, not CSV text", "data.uri"]),
    }


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Prefect home for several runs: its database is created and migrated once."""
    return tmp_path_factory.mktemp("shared-cli") / "prefect-home"


@pytest.mark.slow
class TestFuzzedFilesFailShort:
    """The failures the fuzz tests provoke, through the training command line: the cause,
    the file, the fix; no traceback; nothing registered."""

    @pytest.mark.parametrize("case", ["cp1251", "wrong separator", "parquet named csv",
                                      "contract", "binary"])
    def test_bad_file(self, case: str, tmp_path: Path, shared_home: Path,
                      flights_frame: pd.DataFrame) -> None:
        path, overrides, needles = bad_files(flights_frame, tmp_path)[case]
        res = run_flow("training", f"data.uri={path}", *overrides, "tracking=disabled",
                       f"paths.root={tmp_path}", home=shared_home)
        out = res.stdout + res.stderr
        assert res.returncode == 2, out[-3000:]
        error = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
        assert len(error) == 1 and path.name in res.stderr, res.stderr
        assert "\nfix: " in res.stderr
        for needle in needles:
            assert needle in res.stderr, (needle, res.stderr)
        assert "Traceback" not in out and 'File "' not in out
        assert not (tmp_path / "registry").exists()  # nothing was registered
