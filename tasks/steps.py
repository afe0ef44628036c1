"""A project's own steps at the hooks of the stock training flow (``conf/steps``).

A step is a plain, typed function of the project (or a Prefect task, whose function is
used), named by ``_target_`` in ``conf/steps/<name>.yaml`` and plugged in by
``conf/pipeline.yaml`` (``- steps: [<name>, ...]`` in its defaults, in running order).
The training flow runs each one at its hook as a Prefect task named after the step,
with the retries and timeout of ``orchestration.tasks.<family>`` (``step`` by default).
Nothing of the flow is copied.

The hooks and their contracts (:data:`HOOKS`):

``after_ingest``: ``fn(frame: pd.DataFrame, **params) -> pd.DataFrame``
    Runs after ingest and before validation, on a shallow copy of the ingested rows
    (never modify the input in place). The data contract (``conf/validate``) checks what
    it returns; featurize, train and evaluate work on that. Batch scoring and the model
    server do not run it, so a column it adds that ``conf/features`` uses must be in
    their input as well.
``after_evaluate``: ``fn(candidate: Candidate, **params) -> Check``
    Runs after evaluate, with the trained model, its splits and its evaluation. The
    check's metrics join the model's (in the summary, the registry and W&B); a failure
    joins the quality gate, so the model is not promoted (``promote.require_gate``)
    or, with ``evaluate.on_gate_failure: fail``, not registered.

:func:`resolve_steps` checks every step before any work starts: the hook exists, the
target imports and is a function or a Prefect task, ``params`` fit its signature, its
return annotation (if any) fits the hook, and its family is in
``orchestration.tasks``. Each problem is a :class:`~prefab_mlops.core.errors.ConfigError`
naming ``steps.<name>``. A step that returns the wrong thing when it runs raises
:class:`~prefab_mlops.core.errors.StepError`, naming the step.

Caching: with ``cache: false`` (the default) a step runs in every run, and the stock
tasks after it are keyed on what it *returned*: the rows of an ``after_ingest`` step
carry the content fingerprint of the frame
(:func:`~prefab_mlops.core.fingerprint.frame_fingerprint`, about 0.2-0.5 s for the
336,776-row flights table), so validate, featurize and train rerun exactly when the
rows change, whatever the step read or whichever helper of it changed. With
``cache: true`` the step's own result is cached across runs, keyed on its function's
source, its params and its inputs' fingerprints: only for a step that reads nothing
but its inputs and whose logic is all in that function.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
import sys
import typing
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import Flow, Task, task

from prefab_mlops.config import StepConfig
from prefab_mlops.config.params import param_problems
from prefab_mlops.core.errors import ConfigError, StepError
from prefab_mlops.core.fingerprint import code_hash, frame_fingerprint, stable_hash
from prefab_mlops.core.manifest import RuleCheck, StepRecord
from prefab_mlops.datasets import stats as _stats
from prefab_mlops.orchestration.logs import get_logger
from prefab_mlops.tasks.evaluate import Evaluation
from prefab_mlops.tasks.featurize import FeatureSet, Split
from prefab_mlops.tasks.ingest import Dataset
from prefab_mlops.tasks.train import TrainedModel


# ------------------------------------------------------------- the contracts
@dataclass(frozen=True)
class Check:
    """What an ``after_evaluate`` step returns.

    Attributes:
        metrics: Extra metrics of the model, e.g. ``{"jfk_recall": 0.61}``. Their names
            must differ from the stock metrics' and from other checks'.
        failures: Why the model must not be promoted, one line each (empty: it passes).
    """

    metrics: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(frozen=True)
class Candidate:
    """What an ``after_evaluate`` step is given: the model this run trained, and its data.

    Attributes:
        model: The trained model; ``model.pipeline`` is the fitted inference pipeline
            (preprocessing and estimator), the one that is registered and served.
        features: Its splits; ``features.test`` holds the held-out rows.
        evaluation: The stock evaluation (test metrics, gate outcome).
    """

    model: TrainedModel
    features: FeatureSet
    evaluation: Evaluation

    @property
    def pipeline(self) -> Any:
        """The fitted inference pipeline: ``predict``/``predict_proba`` on raw rows."""
        return self.model.pipeline

    @property
    def test(self) -> Split:
        """The test split: ``test.X`` (raw input rows) and ``test.y`` (labels).

        For classification, ``test.y`` holds positions in :attr:`classes`.
        """
        return self.features.test

    @property
    def classes(self) -> list[Any] | None:
        return self.model.classes

    @property
    def problem_type(self) -> str:
        return self.model.problem_type

    @property
    def metrics(self) -> dict[str, float]:
        return self.evaluation.metrics


@dataclass(frozen=True)
class Hook:
    """A point of the training flow where the project's steps run, and their contract."""

    name: str
    takes: str
    returns: type
    returns_text: str


#: Every hook of the training flow, in the order the flow reaches them.
HOOKS: dict[str, Hook] = {h.name: h for h in (
    Hook("after_ingest", "the ingested rows (a pandas DataFrame)", pd.DataFrame,
         "a pandas DataFrame (the rows to validate and train on)"),
    Hook("after_evaluate", "a Candidate (the trained model, its splits and evaluation)",
         Check, "a prefab_mlops.tasks.steps.Check (metrics and failures)"),
)}


@dataclass(frozen=True)
class Step:
    """A checked step from ``conf/steps``, ready to run (see :func:`resolve_steps`).

    Attributes:
        name: Its key in ``steps`` (and the name of its Prefect task runs).
        hook: A key of :data:`HOOKS`.
        target: Its ``_target_``.
        params: Its keyword arguments.
        family: Its ``orchestration.tasks`` entry.
        cache: Whether its result is cached across runs.
        code: Hash of its function's source.
        fn: The function (for a Prefect task, the function it wraps).
    """

    name: str
    hook: str
    target: str
    params: dict[str, Any]
    family: str
    cache: bool
    code: str
    fn: Callable[..., Any] = field(repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        """Identifies what the step does: its target, code and params (cache keys)."""
        return stable_hash(self.name, self.hook, self.target, self.params, self.code)

    def record(self) -> StepRecord:
        """What the data lineage of a registered model records of this step."""
        return StepRecord(name=self.name, hook=self.hook, target=self.target,
                          code=self.code, params=dict(self.params))


@dataclass(frozen=True)
class Steps:
    """The project's steps by hook, each tuple in running order."""

    after_ingest: tuple[Step, ...] = ()
    after_evaluate: tuple[Step, ...] = ()

    def names(self) -> dict[str, list[str]]:
        """``{hook: [step name, ...]}`` for the hooks that have steps (run summaries)."""
        return {h: [s.name for s in getattr(self, h)] for h in HOOKS if getattr(self, h)}


# ---------------------------------------------------------------- resolving
@contextmanager
def _importable_from(dirs: Sequence[Path]) -> Iterator[None]:
    """``dirs`` at the front of ``sys.path`` while the steps' modules are imported.

    Like ``python -m`` (the working directory) and Prefect's loading of a flow's module,
    so that a project's ``tasks`` package imports however the flow was started (the
    ``prefab`` command, a deployment's worker). Once imported, its submodules import
    through the package itself.
    """
    wanted = dict.fromkeys(str(Path(d).resolve()) for d in dirs)
    added = [entry for entry in wanted if entry not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)


def _locate(path: str, where: str) -> tuple[Any, str | None]:
    """Import ``module.attr`` (the longest importable module prefix): ``(obj, problem)``."""
    parts = path.split(".")
    if len(parts) < 2 or not all(parts):
        return None, f"'{path}' is not a dotted path module.function"
    missing: str | None = None
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
                missing = missing or exc.name
                continue
            return None, f"importing {module_name} failed: ModuleNotFoundError: {exc}"
        except Exception as exc:  # noqa: BLE001 - any error of the project's module, named
            return None, f"importing {module_name} failed: {type(exc).__name__}: {exc}"
        obj: Any = module
        for depth, attr in enumerate(parts[i:]):
            if not hasattr(obj, attr):
                if missing:
                    return None, f"there is no module '{missing}' {where}"
                owner = ".".join(parts[:i + depth])
                return None, f"'{owner}' has no attribute '{attr}'"
            obj = getattr(obj, attr)
        return obj, None
    return None, f"there is no module '{missing or parts[0]}' {where}"


def _function(obj: Any) -> tuple[Callable[..., Any] | None, str | None]:
    """The plain function behind a target: ``(fn, problem)``."""
    if isinstance(obj, Flow):
        return None, ("it is a Prefect flow; a step is a function or a Prefect task (call a "
                      "flow from a project flow instead, see templates/flow)")
    fn = obj.fn if isinstance(obj, Task) else obj
    if not inspect.isfunction(fn):
        return None, f"it is a {type(obj).__name__}, not a function or a Prefect task"
    if inspect.iscoroutinefunction(fn):
        return None, "it is an async function; a step is a plain (synchronous) function"
    return fn, None


def _return_problem(fn: Callable[..., Any], hook: Hook) -> str | None:
    """Whether ``fn``'s return annotation (when it has one) contradicts the hook."""
    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:  # noqa: BLE001 - an unresolvable annotation is not checked
        return None
    # only a plain class is checked (not Any, Self, a TypeVar or a generic alias)
    if ret is None or ret is Any or not isinstance(ret, type) or issubclass(ret, hook.returns):
        return None
    return (f"its return annotation is {ret.__name__}; an {hook.name} step returns "
            f"{hook.returns_text}")


def _resolve(name: str, cfg: StepConfig, families: Collection[str],
             where: str) -> tuple[Step | None, list[str]]:
    problems: list[str] = []
    hook = HOOKS.get(cfg.hook)
    if hook is None:
        problems.append(f"hook is '{cfg.hook}'; expected one of {list(HOOKS)}")
    if cfg.family not in families:
        problems.append(f"family '{cfg.family}' is not in orchestration.tasks "
                        f"({sorted(families)})")
    target = cfg._target_
    obj, problem = _locate(target, where)
    fn = None
    if problem is None:
        fn, problem = _function(obj)
    if problem is not None:
        problems.append(f"_target_ '{target}': {problem}")
    if fn is not None and hook is not None:
        problems += [f"params: {p}" for p in param_problems(fn, cfg.params, data_args=1)]
        ret = _return_problem(fn, hook)
        if ret:
            problems.append(ret)
    if problems or fn is None or hook is None:
        return None, problems
    return Step(name=name, hook=hook.name, target=target, params=dict(cfg.params),
                family=cfg.family, cache=cfg.cache, code=code_hash(fn), fn=fn), []


def resolve_steps(cfg: Mapping[str, StepConfig], families: Collection[str],
                  project_dirs: Sequence[Path] = ()) -> Steps:
    """Check the project's steps against their hooks' contracts and import them.

    Called by the training flow (and its command line, before Prefect starts) before
    any task runs.

    Args:
        cfg: ``steps`` (``conf/steps``): step name -> :class:`~prefab_mlops.config.StepConfig`.
        families: The task families of ``orchestration.tasks``.
        project_dirs: Where the project's packages are (the directory holding ``conf/``,
            the working directory), besides ``sys.path``.

    Returns:
        The :class:`Steps` by hook, in the order of ``cfg``.

    Raises:
        ConfigError: listing, per ``steps.<name>``, every problem: an unknown hook or
            family, a target that does not import or is not a function or Prefect
            task, params that do not fit its signature, a return annotation that
            does not fit the hook.
    """
    by_hook: dict[str, list[Step]] = {h: [] for h in HOOKS}
    errors: list[str] = []
    where = ("in " + " or ".join(str(Path(d).resolve()) for d in dict.fromkeys(project_dirs))
             + " or on sys.path" if project_dirs else "on sys.path")
    with _importable_from(project_dirs):
        resolved = [(str(name), *_resolve(str(name), step_cfg, families, where))
                    for name, step_cfg in cfg.items()]
    for name, step, problems in resolved:
        if problems:
            errors.append(f"steps.{name}: " + "; ".join(problems))
        elif step is not None:
            by_hook[step.hook].append(step)
    if errors:
        raise ConfigError(
            "Invalid project step(s): " + " | ".join(errors) + ". " + "; ".join(
                f"an {h.name} step takes {h.takes} and returns {h.returns_text}"
                for h in HOOKS.values()) + ".",
            fix="Fix the named entries in conf/steps/<name>.yaml: _target_ is module.function "
            "of the project (importable from the project directory), params are its keyword "
            "parameters; or drop the step from `steps` in conf/pipeline.yaml's defaults.")
    return Steps(**{h: tuple(s) for h, s in by_hook.items()})


# -------------------------------------------------------------------- tasks
@task(name="step", persist_result=True)
def apply_data_step(data: Dataset, step: Step) -> Dataset:
    """Run an ``after_ingest`` step on the rows of ``data``.

    The flow names each run after the step (``Task.with_options(name=...)``).

    Args:
        data: The ingested (or previous step's) data set.
        step: A resolved ``after_ingest`` step (``conf/steps``).

    Returns:
        ``data`` holding the frame the step returned, with that frame's content
        fingerprint and the step added to its lineage (``steps``).

    Raises:
        StepError: the step returned something other than a DataFrame.
    """
    out = step.fn(data.frame.copy(deep=False), **step.params)
    if not isinstance(out, pd.DataFrame):
        raise StepError(
            f"Step '{step.name}' ({step.target}) returned a {type(out).__name__}; an "
            f"after_ingest step must return {HOOKS['after_ingest'].returns_text}.",
            fix=f"Return the new frame from {step.target} (for example `return "
            f"frame.assign(...)`), or drop '{step.name}' from `steps` in conf/pipeline.yaml.")
    fingerprint = stable_hash(data.name, frame_fingerprint(out))
    get_logger().info("Step %s: %s rows x %s columns -> %s x %s (fingerprint %s)", step.name,
                      data.rows, len(data.columns), len(out), out.shape[1], fingerprint[:12])
    return replace(data.with_frame(out), fingerprint=fingerprint,
                   stats=_stats(out, data.time_column), steps=[*data.steps, step.record()])


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@task(name="check", persist_result=True)
def apply_check_step(candidate: Candidate, step: Step) -> Check:
    """Run an ``after_evaluate`` step on the model this run trained.

    Args:
        candidate: The trained model, its splits and its evaluation.
        step: A resolved ``after_evaluate`` step (``conf/steps``).

    Returns:
        The step's :class:`Check`, with plain ``float`` metrics and ``str`` failures.

    Raises:
        StepError: the step returned something other than a :class:`Check`, or a
            metric that is not a number.
    """
    out = step.fn(candidate, **step.params)
    fix = (f"Return Check(metrics={{name: number}}, failures=[reason, ...]) from "
           f"{step.target}, or drop '{step.name}' from `steps` in conf/pipeline.yaml.")
    if not isinstance(out, Check):
        raise StepError(f"Step '{step.name}' ({step.target}) returned a "
                        f"{type(out).__name__}; an after_evaluate step must return "
                        f"{HOOKS['after_evaluate'].returns_text}.", fix=fix)
    bad = {str(k): v for k, v in out.metrics.items() if not _number(v)}
    if bad:
        raise StepError(f"Step '{step.name}' ({step.target}) returned metrics that are not "
                        f"numbers: {bad}.", fix=fix)
    check = Check(metrics={str(k): float(v) for k, v in out.metrics.items()},
                  failures=[str(f) for f in out.failures])
    get_logger().info("Check %s: %s; %s", step.name,
                      {k: round(v, 4) if math.isfinite(v) else v
                       for k, v in check.metrics.items()},
                      "passed" if check.passed else f"FAILED: {check.failures}")
    return check


def with_checks(evaluation: Evaluation, checks: Sequence[tuple[Step, Check]]) -> Evaluation:
    """``evaluation`` with the checks' metrics added and their failures in the gate (pure).

    Args:
        evaluation: The stock evaluation.
        checks: Each ``after_evaluate`` step with the check it returned, in order.

    Returns:
        A new :class:`~prefab_mlops.tasks.evaluate.Evaluation`: the gate fails when
        any check failed (each failure prefixed with the step's name).

    Raises:
        StepError: a check reports a metric the model already has.
    """
    if not checks:
        return evaluation
    metrics = dict(evaluation.metrics)
    added: list[RuleCheck] = []
    for step, check in checks:
        clash = sorted(set(check.metrics) & set(metrics))
        if clash:
            raise StepError(
                f"Step '{step.name}' ({step.target}) reports metric(s) {clash}, which the "
                "model already has (a stock metric or an earlier check's).",
                fix=f"Give the metrics of {step.target} names of their own, for example "
                f"prefixed with '{step.name}_'.")
        metrics.update(check.metrics)
        # a check fails exactly when it lists failures (Check.passed)
        added += [RuleCheck(rule=f"step {step.name}", metric="", passed=False,
                            text=f"{step.name}: {f}") for f in check.failures]
    gate = replace(evaluation.gate, checks=[*evaluation.gate.checks, *added])
    return replace(evaluation, metrics=metrics, gate=gate,
                   fingerprint=stable_hash(evaluation.fingerprint,
                                           [(s.fingerprint, c) for s, c in checks]))
