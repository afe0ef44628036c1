"""The batch inference flow: score a batch with the production model.

::

    python -m prefab_mlops.flows.batch_inference --batch data/new_sales.csv

The batch is checked against the model's input schema, scored, and written with
the model version and a timestamp under ``inference.output_dir`` (or S3).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from prefect import flow

from prefab_mlops.config import LoadedConfig, PipelineConfig
from prefab_mlops.core.errors import RegistryError
from prefab_mlops.flows.common import (
    load_and_log,
    run_cli,
    run_ids,
    unlabelled,
)
from prefab_mlops.orchestration.artifacts import publish_markdown
from prefab_mlops.orchestration.runtime import configure
from prefab_mlops.tasks.ingest import ingest
from prefab_mlops.tasks.predict import score_batch, write_predictions
from prefab_mlops.tasks.registry import load_production
from prefab_mlops.tasks.validate import validate_batch


@flow(name="batch-inference")
def batch_inference(overrides: list[str] | None = None, batch_uri: str | None = None,
                    config_name: str = "pipeline", config_dir: str | None = None) -> dict[str, Any]:
    """Score a batch with the production model and write the predictions.

    Args:
        overrides: Hydra overrides.
        batch_uri: The batch (overrides ``data.uri``); it needs no target column.
        config_name: Primary config.
        config_dir: The project's ``conf/`` directory.

    Returns:
        Rows scored, model version and the predictions' location.
    """
    loaded = load_and_log(overrides, config_name, config_dir,
                          [f"data.uri={batch_uri}"] if batch_uri else None)
    cfg: PipelineConfig = loaded.typed
    orch, inf = cfg.orchestration, cfg.inference
    name = cfg.register.model_name
    production = configure(load_production, "register", orch)(cfg.register, cfg.storage,
                                                              cfg.promote.alias)
    if production is None:
        raise RegistryError(f"Model '{name}' has no '{cfg.promote.alias}' version to score "
                            "with.",
                            fix="Train and promote a model first (make train).")
    manifest = production.version
    batch = configure(ingest, "ingest", orch, cache=True)(
        unlabelled(cfg.data), cfg.paths, cfg.storage, cfg.seed)
    schema = manifest.features.input_schema
    extra = [c for c in batch.frame.columns if c not in schema]
    configure(validate_batch, "validate", orch)(batch.frame, schema, extra, batch.source)
    scored = score_batch(batch.frame, production.model, schema.names,
                         manifest.problem_type, manifest.features.classes, name,
                         manifest.version, list(inf.passthrough))
    uri = configure(write_predictions, "predictions", orch)(scored, inf, cfg.storage,
                                                            cfg.data.name)
    summary = {"model_name": name, "model_version": manifest.version, "rows": len(scored.frame),
               "output_uri": uri, "scored_at": scored.scored_at, "flow_run_id": run_ids()[0]}
    publish_markdown(f"{name}-batch-predictions",
                     f"# Batch predictions\n\n{len(scored.frame):,} rows from `{batch.source}` "
                     f"scored with **{name} v{manifest.version}** → `{uri}`")
    return summary


def run(args: argparse.Namespace, loaded: LoadedConfig | None = None) -> int:
    """Run the flow from parsed command-line arguments (see :mod:`prefab_mlops.flows.cli`),
    with the config ``loaded`` from them if the caller has it already."""
    args.json = True  # the summary is printed as JSON either way
    return run_cli(args, lambda: batch_inference(
        overrides=args.overrides, batch_uri=args.batch, config_name=args.config_name,
        config_dir=args.config_dir), str, loaded=loaded)


def main(argv: list[str] | None = None) -> int:
    """``python -m prefab_mlops.flows.batch_inference``: the same as ``prefab score``."""
    from prefab_mlops.flows.cli import main as cli_main

    return cli_main(["score", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
