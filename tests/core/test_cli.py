"""The ``prefab`` CLI, called in-process against a registry under ``tmp_path``."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

from prefab_mlops.cli import main
from prefab_mlops.core.fingerprint import bytes_sha256
from prefab_mlops.core.manifest import EvaluationRecord, GateRecord, ModelVersion
from prefab_mlops.core.registry import DECLINE_EVENT, PROMOTE_EVENT, ModelRegistry
from prefab_mlops.core.storage import LocalObjectStore

CONF = str(Path(__file__).resolve().parents[2] / "conf")
MODEL = "flights-binary"  # register.model_name of the default config


@pytest.fixture()
def registry(tmp_path: Path) -> ModelRegistry:
    """Three versions of the default model in the registry the config points at."""
    reg = ModelRegistry(LocalObjectStore(tmp_path / "registry"))
    for i, auc in enumerate([0.70, 0.72, 0.69], start=1):
        reg.register(ModelVersion(
            model_name=MODEL, version=0, created_at="", fingerprint=f"fp{i}", model_key="",
            model_sha256="", problem_type="binary",
            metrics={"roc_auc": auc, "n_test": 1000.0},
            gate=GateRecord(passed=auc >= 0.7, decided_by=["absolute"],
                            summary="passed" if auc >= 0.7 else "FAILED: roc_auc < 0.7"),
            config={"seed": 42, "model": {"n_estimators": 20 * i}}),
            pickle.dumps({"model": i}))
    return reg


@pytest.fixture()
def prefab(tmp_path: Path, capsys: pytest.CaptureFixture):
    """Run ``prefab ARGS`` in-process; returns (exit code, stdout, stderr)."""

    def run(*args: str, overrides: tuple[str, ...] = ()) -> tuple[int, str, str]:
        code = main([*args, "--config-dir", CONF, "--", f"paths.root={tmp_path}", *overrides])
        out, err = capsys.readouterr()
        return code, out, err

    return run


class TestRegistryList:
    def test_json_lists_every_version_with_aliases(self, registry: ModelRegistry, prefab
                                                   ) -> None:
        registry.set_alias(MODEL, "production", 2)
        registry.set_alias(MODEL, "candidate", 3)

        code, out, err = prefab("registry", "list", "--json")

        assert code == 0, err
        rows = json.loads(out)
        assert [(r["model"], r["version"], r["aliases"]) for r in rows] == [
            (MODEL, 1, []), (MODEL, 2, ["production"]), (MODEL, 3, ["candidate"])]
        assert rows[0]["metrics"] == {"roc_auc": 0.7}  # n_test is left out
        assert [r["gate_passed"] for r in rows] == [True, True, False]

    def test_text_output(self, registry: ModelRegistry, prefab) -> None:
        registry.set_alias(MODEL, "production", 2)

        code, out, _ = prefab("registry", "list")

        lines = out.strip().splitlines()
        assert code == 0 and len(lines) == 3
        assert lines[1].startswith(f"{MODEL} v2") and "production" in lines[1]
        assert "gate=FAIL" in lines[2]

    def test_a_version_shows_its_latest_evaluation_and_decision(
            self, registry: ModelRegistry, prefab) -> None:
        """v3 failed its gate when registered; a later run evaluated the same model again,
        it passed the baseline rule and was promoted."""
        registry.record_evaluation(MODEL, EvaluationRecord(
            version=3, at="", metrics={"roc_auc": 0.74, "n_test": 1000.0},
            gate=GateRecord(passed=True, decided_by=["baseline"],
                            summary="passed: baseline rule: roc_auc 0.7400 >= 0.5250 required")))
        registry.record_event(MODEL, DECLINE_EVENT, version=2, reason="does not beat v1")
        registry.set_alias(MODEL, "production", 3, event=PROMOTE_EVENT, reason="beats v1")

        code, out, _ = prefab("registry", "list")
        lines = out.strip().splitlines()
        assert code == 0
        assert "gate=ok(baseline)" in lines[2] and "decision=promoted" in lines[2]
        assert "'roc_auc': 0.74" in lines[2] and "FAIL" not in lines[2]
        assert "decision=declined" in lines[1] and "decision=-" in lines[0]

        rows = json.loads(prefab("registry", "list", "--json")[1])
        assert [r["gate_passed"] for r in rows] == [True, True, True]
        assert rows[2]["gate"].startswith("passed: baseline rule")
        assert rows[2]["decision"]["event"] == "promote"
        assert rows[2]["decision"]["reason"] == "beats v1"

        shown = json.loads(prefab("registry", "show", MODEL, "3")[1])
        assert shown["gate"]["passed"] is False  # the manifest: as registered
        assert shown["latest_evaluation"]["gate"]["passed"] is True
        assert (shown["evaluations"], shown["latest_decision"]["reason"]) == (2, "beats v1")

    def test_empty_registry(self, prefab) -> None:
        code, out, _ = prefab("registry", "list")

        assert (code, out.strip()) == (0, "no registered models")


class TestRegistryShow:
    def test_show_a_version_as_json_includes_its_config(self, registry: ModelRegistry, prefab
                                                        ) -> None:
        code, out, _ = prefab("registry", "show", MODEL, "2", "--json")

        shown = json.loads(out)
        assert code == 0
        assert (shown["version"], shown["fingerprint"]) == (2, "fp2")
        assert shown["config"]["model"] == {"n_estimators": 40}
        assert shown["model_sha256"] == registry.get_version(MODEL, 2).model_sha256

    def test_show_defaults_to_production_and_hides_config(self, registry: ModelRegistry,
                                                          prefab) -> None:
        registry.set_alias(MODEL, "production", 3)

        code, out, _ = prefab("registry", "show")

        shown = json.loads(out)
        assert code == 0 and shown["version"] == 3
        assert "config" not in shown

    def test_show_without_production_is_an_error(self, registry: ModelRegistry, prefab
                                                 ) -> None:
        code, out, err = prefab("registry", "show")

        assert code == 2 and out == ""
        assert "has no production version" in err and "Fix:" in err

    def test_show_unknown_version_is_an_error(self, registry: ModelRegistry, prefab) -> None:
        code, _, err = prefab("registry", "show", MODEL, "9")

        assert code == 2
        assert f"'{MODEL}' has no version 9 (versions: [1, 2, 3])" in err


class TestRegistryCheck:
    def test_a_healthy_registry_exits_0(self, registry: ModelRegistry, prefab) -> None:
        registry.set_alias(MODEL, "production", 2)

        code, out, err = prefab("registry", "check")

        assert (code, out.strip(), err) == (0, "registry ok", "")

    def test_one_line_per_problem_and_exit_1(self, registry: ModelRegistry, prefab) -> None:
        v1, v3 = registry.get_version(MODEL, 1), registry.get_version(MODEL, 3)
        registry.store.put(v1.model_key, b"tampered")
        registry.store.put(f"{MODEL}/blobs/{'d' * 32}/model.pkl", b"a registration died")

        code, out, err = prefab("registry", "check", MODEL, "--grace", "0")

        assert code == 1
        lines = out.strip().splitlines()
        assert len(lines) == 2
        assert lines[0] == (
            f"{MODEL}: sha256-mismatch: {v1.model_key}: {MODEL}:v1's model file has sha256 "
            f"{bytes_sha256(b'tampered')[:12]}…, registered {v1.model_sha256[:12]}…")
        assert re.fullmatch(
            f"{MODEL}: orphan-blobs: {MODEL}/blobs/{'d' * 32}/: 1 file\\(s\\) no manifest "
            r"references, last written \d+ s ago \(a registration that died before its "
            r"manifest\)", lines[1]), lines[1]
        assert "--repair" in err
        assert registry.get_version(MODEL, 3) == v3

    def test_young_leftovers_are_not_orphans_yet(self, registry: ModelRegistry, prefab
                                                 ) -> None:
        registry.store.put(f"{MODEL}/blobs/{'d' * 32}/model.pkl", b"uploading")

        assert prefab("registry", "check")[0] == 0  # default grace: an hour

    def test_repair_removes_orphans_and_reports_what_is_left(
            self, registry: ModelRegistry, prefab) -> None:
        orphan = f"{MODEL}/blobs/{'d' * 32}/model.pkl"
        registry.store.put(orphan, b"a registration died")
        registry.store.put(registry.get_version(MODEL, 2).model_key, b"tampered")

        code, out, _ = prefab("registry", "check", "--repair", "--grace", "0", "--json")

        report = json.loads(out)
        assert code == 1 and report["ok"] is False
        assert [(p["kind"], p["repairable"]) for p in report["problems"]] == [
            ("sha256-mismatch", False)]
        fixed = [(r["kind"], r["key"]) for r in report["repairs"] if r["kind"]]
        assert fixed == [("orphan-blobs", f"{MODEL}/blobs/{'d' * 32}/")]
        assert not registry.store.exists(orphan)
        assert [v.version for v in registry.versions(MODEL)] == [1, 2, 3]

    def test_negative_grace_is_a_usage_error(self, prefab, capsys) -> None:
        with pytest.raises(SystemExit) as exc:
            main(["registry", "check", "--grace", "-1"])
        assert exc.value.code == 2
        assert "must be >= 0 seconds" in capsys.readouterr().err


class TestPromote:
    def test_promote_moves_production_and_logs_it(self, registry: ModelRegistry, prefab
                                                  ) -> None:
        assert prefab("promote", MODEL, "1")[0] == 0

        code, out, _ = prefab("promote", MODEL, "2", "--reason", "better auc")

        assert code == 0
        assert out.strip() == f"{MODEL}: production -> v2 (was v1)"
        assert registry.alias(MODEL, "production").version == 2
        last = registry.events(MODEL)[-1]
        assert (last["event"], last["version"], last["previous"], last["reason"]) == (
            "promote", 2, 1, "better auc")

    def test_promote_json_and_another_alias(self, registry: ModelRegistry, prefab) -> None:
        code, out, _ = prefab("promote", MODEL, "3", "--alias", "staging", "--json")

        assert code == 0
        assert json.loads(out)["version"] == 3 and json.loads(out)["alias"] == "staging"
        assert registry.alias(MODEL, "production") is None

    def test_promote_unknown_version_is_an_error(self, registry: ModelRegistry, prefab
                                                 ) -> None:
        code, out, err = prefab("promote", MODEL, "42")

        assert code == 2 and out == ""
        assert err.startswith("error: ") and "no version 42" in err
        assert "Fix: List versions with `prefab registry list" in err
        assert registry.alias(MODEL, "production") is None


class TestRollback:
    def test_rollback_goes_back_twice(self, registry: ModelRegistry, prefab) -> None:
        for v in ("1", "2", "3"):
            prefab("promote", MODEL, v)

        code, out, _ = prefab("rollback")
        assert code == 0
        assert out.strip() == f"{MODEL}: production rolled back from v3 to v2"

        code, out, _ = prefab("rollback", MODEL, "--json")
        assert code == 0 and json.loads(out)["version"] == 1
        assert registry.alias(MODEL, "production").version == 1

    def test_rollback_without_history_is_an_error(self, registry: ModelRegistry, prefab
                                                  ) -> None:
        prefab("promote", MODEL, "1")

        code, out, err = prefab("rollback", MODEL)

        assert code == 2 and out == ""
        assert "no earlier version to roll back to" in err
        assert f"prefab promote {MODEL} N" in err
        assert registry.alias(MODEL, "production").version == 1


class TestHistory:
    def test_history_lists_events_in_order(self, registry: ModelRegistry, prefab) -> None:
        prefab("promote", MODEL, "1")
        prefab("promote", MODEL, "2")
        prefab("rollback", MODEL, "--reason", "v2 misbehaves")

        code, out, _ = prefab("history", "--json")

        assert code == 0
        events = [(e["event"], e["version"]) for e in json.loads(out)]
        assert events == [("register", 1), ("register", 2), ("register", 3),
                          ("promote", 1), ("promote", 2), ("rollback", 1)]
        code, text, _ = prefab("history", MODEL)
        last = text.strip().splitlines()[-1]
        assert "rollback" in last and "(from v2)" in last and "v2 misbehaves" in last

    def test_history_of_an_unknown_model_is_empty(self, prefab) -> None:
        code, out, _ = prefab("history", "nobody")

        assert (code, out.strip()) == (0, "no events")


class TestConfigErrors:
    def test_bad_override_is_an_error(self, prefab) -> None:
        code, out, err = prefab("registry", "list", overrides=("storage.kind=ftp",))

        assert code == 2 and out == ""
        assert "'storage.kind' is 'ftp'" in err and "Fix:" in err

    def test_missing_config_dir_is_an_error(self, tmp_path: Path, capsys) -> None:
        code = main(["registry", "list", "--config-dir", str(tmp_path / "nope")])

        assert code == 2
        assert "Config 'pipeline.yaml' not found" in capsys.readouterr().err

    def test_usage_error_exits_2(self, capsys) -> None:
        with pytest.raises(SystemExit) as exc:
            main(["promote", MODEL, "not-a-number"])
        assert exc.value.code == 2
        assert "invalid int value" in capsys.readouterr().err
