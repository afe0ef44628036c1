"""prefab_mlops/config/params.py: a step's params are typed by its function's signature."""

from __future__ import annotations

from typing import Any

from prefab_mlops.config.params import param_problems


def clip(frame: object, columns: list[str] | None = None, low: float = 0.0, high: float = 1.0,
         *, label: str = "x") -> object:
    return frame


def needs(frame: object, threshold: int) -> object:
    return frame


def anything(frame: object, **kwargs: Any) -> object:
    return frame


def no_data(*, low: float = 0.0) -> object:
    return low


class TestParamProblems:
    def test_fitting_params_have_none(self) -> None:
        assert param_problems(clip, {"columns": None, "low": 0, "high": 0.5, "label": "z"}) == []

    def test_every_problem_is_listed(self) -> None:
        problems = param_problems(clip, {"lo": 0.1, "high": "top", "columns": "a"})
        assert problems[0].startswith("unknown key 'lo'")
        assert "['columns', 'high', 'label', 'low']" in problems[0]
        assert any(p.startswith("'high' is 'top'") for p in problems)
        assert any(p.startswith("'columns' is 'a'") for p in problems)
        assert len(problems) == 3

    def test_missing_required_and_bool_for_int(self) -> None:
        assert param_problems(needs, {}) == ["missing required key 'threshold'"]
        assert param_problems(needs, {"threshold": True})[0].startswith("'threshold' is True")

    def test_var_keyword_takes_any_key(self) -> None:
        assert param_problems(anything, {"whatever": 1}) == []

    def test_the_data_argument_is_required(self) -> None:
        assert "positional data argument" in param_problems(no_data, {})[0]
