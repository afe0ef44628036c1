"""The training pipeline as plain Python: every task's ``.fn`` in sequence, no Prefect.

This is the floor the orchestrated flow (:func:`prefab_mlops.flows.training.training`) is
measured against. It performs the same steps, with the same resolved config, in
the same order as the flow (config load, ingest, validate, featurize,
check-leakage, train, evaluate, load-production, evaluate-champion, register,
decide_promotion, promote), but without task runs, cache keys, result persistence or API calls.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any


@contextmanager
def _phase(timings: dict[str, float], name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 4)


def run_plain(overrides: list[str], config_dir: str | None = None) -> dict[str, Any]:
    """Run the pipeline steps as plain function calls.

    Args:
        overrides: Hydra overrides, the same as the flow gets (``paths.root=...`` must
            point at a fresh directory for an empty registry).
        config_dir: The project's ``conf/`` directory.

    Returns:
        ``{"phases": {step: seconds}, "version": int, "rows": int, "metrics": {...}}``.
    """
    from prefab_mlops.config import ModelSpec, TargetSpec, load_config
    from prefab_mlops.tasks.evaluate import evaluate, evaluate_champion
    from prefab_mlops.tasks.featurize import featurize
    from prefab_mlops.tasks.ingest import ingest
    from prefab_mlops.tasks.promote import decide_promotion, promote
    from prefab_mlops.tasks.register import RunInfo, register
    from prefab_mlops.tasks.registry import load_production
    from prefab_mlops.tasks.train import check_estimator_fits, train
    from prefab_mlops.tasks.validate import check_leakage, validate

    t: dict[str, float] = {}
    with _phase(t, "config"):
        loaded = load_config(overrides, "pipeline", config_dir)
        cfg = loaded.typed
        target = TargetSpec.from_data(cfg.data)
        model_spec = ModelSpec.from_config(cfg.model)
        check_estimator_fits(model_spec.instantiate(), target.problem_type, model_spec.target)
    with _phase(t, "ingest"):
        data = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
    with _phase(t, "validate"):
        validate.fn(data, cfg.validate, target)
    with _phase(t, "featurize"):
        features = featurize.fn(data, cfg.features, target, cfg.seed)
    with _phase(t, "check-leakage"):
        check_leakage.fn(features, cfg.validate, cfg.seed)
    with _phase(t, "train"):
        trained = train.fn(features, model_spec, cfg.seed)
    with _phase(t, "evaluate"):
        evaluation = evaluate.fn(trained, features, cfg.evaluate)
    with _phase(t, "load-production"):
        champion = load_production.fn(cfg.register, cfg.storage, cfg.promote.alias,
                                      with_trained_rows=True)
    with _phase(t, "evaluate-champion"):
        comparison = evaluate_champion.fn(champion, trained, features, cfg.evaluate)
    with _phase(t, "register"):
        run = RunInfo(config=loaded.resolved, project_root=cfg.paths.root)
        version = register.fn(trained, evaluation, data, features, comparison,
                              cfg.register, cfg.storage, run, cfg.seed)
    with _phase(t, "promote"):
        decision = decide_promotion(version, evaluation, comparison, cfg.promote)
        promote.fn(decision, cfg.register.model_name, cfg.promote, cfg.register, cfg.storage)
    return {"phases": t, "version": version.version, "rows": data.rows,
            "metrics": evaluation.metrics, "promoted": decision.promote}
