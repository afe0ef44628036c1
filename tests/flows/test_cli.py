"""The flows' command lines: a bad config fails before Prefect starts; a failed run ends
with its cause and fix, not tracebacks, unless ``--debug``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
