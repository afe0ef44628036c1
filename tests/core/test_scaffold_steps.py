"""prefab_mlops/scaffold/steps.py: a step is listed in conf/pipeline.yaml's defaults as text."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prefab_mlops.core.errors import ConfigError
from prefab_mlops.scaffold.steps import main, plug

REPO = Path(__file__).resolve().parents[2]


def steps_of(text: str) -> list[str]:
    return next(d["steps"] for d in yaml.safe_load(text)["defaults"]
                if isinstance(d, dict) and "steps" in d)


class TestPlug:
    def test_lists_the_step_and_keeps_everything_else_verbatim(self) -> None:
        original = (REPO / "conf" / "pipeline.yaml").read_text()
        assert steps_of(original) == []
        text, changed = plug(original, "clip_outliers")
        assert changed and steps_of(text) == ["clip_outliers"]
        assert text.replace("[clip_outliers]", "[]") == original

    def test_a_new_step_runs_after_the_others(self) -> None:
        text, _ = plug("defaults:\n  - _self_\n  - steps: [a, b]  # in running order\nseed: 1\n",
                       "c")
        assert text == "defaults:\n  - _self_\n  - steps: [a, b, c]  # in running order\nseed: 1\n"

    def test_a_listed_step_is_left_alone(self) -> None:
        original = "defaults:\n  - steps: [a]\n"
        assert plug(original, "a") == (original, False)

    @pytest.mark.parametrize("text", ["defaults:\n  - _self_\n",
                                      "defaults:\n  - steps:\n    - a\n"])
    def test_no_one_line_entry_says_what_to_add(self, text: str) -> None:
        with pytest.raises(ConfigError, match="no one-line `- steps: \\[...\\]`") as err:
            plug(text, "clip")
        assert "`  - steps: [clip]`" in err.value.fix

    def test_a_bad_name_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="not a step name"):
            plug("defaults:\n  - steps: []\n", "Clip-It")


def test_main_edits_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("defaults:\n  - steps: []\n")
    assert main(["plug", str(path), "clip"]) == 0
    assert main(["plug", str(path), "clip"]) == 0
    assert path.read_text() == "defaults:\n  - steps: [clip]\n"
    assert "already plugged in" in capsys.readouterr().err
    path.write_text("defaults: []\n")
    assert main(["plug", str(path), "clip"]) == 2
    assert path.read_text() == "defaults: []\n"
