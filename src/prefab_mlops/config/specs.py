"""Typed views a flow derives from its config and hands to tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefab_mlops.config.schema import DataConfig
from prefab_mlops.core.errors import ConfigError


@dataclass(frozen=True)
class TargetSpec:
    """What the label is: the target column and the problem type (from ``conf/data``)."""

    name: str
    problem_type: str

    @classmethod
    def from_data(cls, data: DataConfig) -> TargetSpec:
        return cls(name=data.target, problem_type=data.problem_type)


@dataclass(frozen=True)
class ModelSpec:
    """The estimator to build (``conf/model``): its class path and keyword arguments."""

    target: str
    params: dict[str, Any]

    @classmethod
    def from_config(cls, model: dict[str, Any]) -> ModelSpec:
        params = {k: v for k, v in model.items() if not k.startswith("_")}
        return cls(target=str(model["_target_"]), params=params)

    def instantiate(self) -> Any:
        """Build the (unfitted) estimator with Hydra's ``instantiate``.

        Raises:
            ConfigError: the class cannot be imported or rejects a parameter.
        """
        from hydra.errors import InstantiationException
        from hydra.utils import instantiate

        try:
            return instantiate({"_target_": self.target, **self.params}, _convert_="all")
        except (InstantiationException, TypeError, ImportError) as exc:
            # One line, but keep the cause: Hydra puts the TypeError on the second line.
            raise ConfigError(
                f"Cannot build model '{self.target}' from conf/model: "
                + " ".join(str(exc).split()),
                fix="Check model._target_ and that every model.* key is a parameter of that "
                "estimator.") from None
