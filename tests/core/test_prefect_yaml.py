"""prefab_mlops/scaffold/prefect_yaml.py: a deployment is added to prefect.yaml as text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prefab_mlops.core.errors import ConfigError
from prefab_mlops.scaffold.prefect_yaml import add_deployment, main

REPO = Path(__file__).resolve().parents[2]
SNIPPET = """\
  - name: data-check
    entrypoint: flows/data_check.py:data_check
    parameters:
      overrides: []
    work_pool: *process_pool
"""


class TestAddDeployment:
    def test_appends_and_keeps_everything_else_verbatim(self) -> None:
        original = (REPO / "prefect.yaml").read_text()
        text, changed = add_deployment(original, SNIPPET)
        assert changed
        assert text.startswith(original.rstrip("\n"))
        doc = yaml.safe_load(text)
        added = doc["deployments"][-1]
        assert added["name"] == "data-check"
        assert added["work_pool"]["name"] == "prefab-process"    # the anchor resolved
        assert text.count("{{ event.id }}") == 1

    def test_inserts_before_a_later_top_level_key(self) -> None:
        text, _ = add_deployment(
            "deployments:\n  - name: a\n    entrypoint: f.py:a\n\nother: 1\n",
            "  - name: b\n    entrypoint: f.py:b\n")
        doc = yaml.safe_load(text)
        assert [d["name"] for d in doc["deployments"]] == ["a", "b"] and doc["other"] == 1

    def test_same_deployment_twice_is_a_no_op(self) -> None:
        text, _ = add_deployment((REPO / "prefect.yaml").read_text(), SNIPPET)
        again, changed = add_deployment(text, SNIPPET)
        assert not changed and again == text

    def test_name_taken_by_another_flow(self) -> None:
        with pytest.raises(ConfigError, match="deployment_name"):
            add_deployment((REPO / "prefect.yaml").read_text(),
                           SNIPPET.replace("data-check", "train"))

    def test_unknown_anchor_writes_nothing(self, tmp_path: Path) -> None:
        target = tmp_path / "prefect.yaml"
        target.write_text("deployments:\n  - name: a\n    entrypoint: f.py:a\n")
        snippet = tmp_path / "snippets" / "d.yaml"
        snippet.parent.mkdir()
        snippet.write_text(SNIPPET)
        assert main(["add-deployment", str(target), str(snippet)]) == 2
        assert target.read_text() == "deployments:\n  - name: a\n    entrypoint: f.py:a\n"
        assert snippet.exists()

    def test_cli_consumes_the_snippet(self, tmp_path: Path) -> None:
        target = tmp_path / "prefect.yaml"
        target.write_text((REPO / "prefect.yaml").read_text())
        snippet = tmp_path / "snippets" / "d.yaml"
        snippet.parent.mkdir()
        snippet.write_text(SNIPPET)
        assert main(["add-deployment", str(target), str(snippet)]) == 0
        assert not snippet.parent.exists()
        assert yaml.safe_load(target.read_text())["deployments"][-1]["name"] == "data-check"
