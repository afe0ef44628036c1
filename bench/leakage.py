"""Cost of the leakage alarm on the flights table (``make bench-leakage``).

Prints ONE JSON object on stdout; progress goes to stderr. Everything runs in this process,
with the imports and the data loaded before any clock starts. See ``bench/README.md``.

Cases:
    pipeline   ``check_leakage.fn`` as the training flow runs it: the flights config,
               the whole prepared table through ``featurize.fn``, then the scan of the
               training split (sampled to 20,000 rows) over the model's 10 inputs
    raw        ``scan`` of every raw column of the table against ``arr_delay > 15``
               (what schema inference checks; ``arr_delay`` itself must be flagged)
    width      ``scan`` of 20,000 rows x N columns (the flights columns repeated), to show
               the cost per column and where the 30 s bound starts to leave columns
               unchecked
    inference  ``schema_infer.infer`` on the whole raw table with the derived target

Environment:
    BENCH_WIDTHS=10,100,400  column counts of the width case
    BENCH_QUIET_WAIT=S       wait up to S seconds (default 10) for a quiet machine first
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/ first, not the repo
    sys.path.insert(0, str(REPO))

from bench._common import log, machine_busy_s, package_version, wait_quiet  # noqa: E402

CONF = REPO / "conf"


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, float]]:
    """Call ``fn``; wall and CPU seconds, and the share of the cores others used meanwhile."""
    cores = os.cpu_count() or 1
    wall0, cpu0, busy0 = time.perf_counter(), time.process_time(), machine_busy_s()
    out = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    foreign = max(0.0, machine_busy_s() - busy0 - cpu)
    return out, {"seconds": round(wall, 3), "cpu_s": round(cpu, 3),
                 "foreign_cpu_share": round(foreign / (wall * cores), 2) if wall else 0.0}


def scan_record(found: Any, clock: dict[str, float]) -> dict[str, Any]:
    checked = max(found.columns, 1)
    return {"rows_given": found.rows_given, "rows": found.rows, "columns": found.columns,
            "unchecked": len(found.unchecked), **clock,
            "per_column_s": round(clock["seconds"] / checked, 4),
            "per_column_cpu_s": round(clock["cpu_s"] / checked, 4),
            "suspects": sorted({s.column.split("__")[0] for s in found.suspects}),
            "best": found.scores[0].__dict__ if found.scores else None}


def main() -> int:
    import pandas as pd

    from prefab_mlops.config import TargetSpec, load_config
    from prefab_mlops.core.leakage import MAX_ROWS, MAX_SECONDS, scan
    from prefab_mlops.scaffold.schema_infer import infer
    from prefab_mlops.tasks.featurize import featurize
    from prefab_mlops.tasks.ingest import ingest
    from prefab_mlops.tasks.validate import check_leakage

    widths = [int(w) for w in os.environ.get("BENCH_WIDTHS", "10,100,400").split(",") if w]
    quiet = float(os.environ.get("BENCH_QUIET_WAIT", "10"))
    root = Path(os.environ.get("TMPDIR", "/tmp")) / "bench-leakage"
    cfg = load_config([f"paths.root={root}", "data.snapshot=false"], config_dir=CONF).typed
    target = TargetSpec.from_data(cfg.data)
    log("reading and preparing the flights table", "leakage")
    data = ingest.fn(cfg.data, cfg.paths, cfg.storage, cfg.seed)
    features = featurize.fn(data, cfg.features, target, cfg.seed)
    raw = ingest.fn(dataclasses.replace(cfg.data, columns=None), cfg.paths, cfg.storage,
                    cfg.seed).frame
    inputs = [c for c in raw.columns if c != target.name]
    scan(raw[inputs[:2]].head(1000), raw[target.name].head(1000), "binary", 0)  # warm imports
    out: dict[str, Any] = {
        "bounds": {"max_rows": MAX_ROWS, "max_seconds": MAX_SECONDS},
        "data": {"rows": data.rows, "train_rows": len(features.train),
                 "model_inputs": len(features.train.X.columns), "raw_columns": len(inputs)},
    }

    out["quiet_wait"] = dict(zip(("waited_s", "load_cores"), wait_quiet(quiet), strict=True))
    log("pipeline: check_leakage.fn on the training split", "leakage")
    report, clock = timed(check_leakage.fn, features, cfg.validate, cfg.seed)
    out["pipeline"] = scan_record(report.scan, clock)

    log(f"raw: scan of all {len(inputs)} raw columns", "leakage")
    found, clock = timed(scan, raw[inputs], raw[target.name], "binary", cfg.seed)
    out["raw"] = scan_record(found, clock)

    sample = raw.sample(n=MAX_ROWS, random_state=cfg.seed).reset_index(drop=True)
    out["width"] = []
    for width in widths:
        cols = {f"{inputs[i % len(inputs)]}__{i}": sample[inputs[i % len(inputs)]]
                for i in range(width)}
        wide = pd.DataFrame(cols)
        log(f"width: {MAX_ROWS:,} rows x {width} columns", "leakage")
        found, clock = timed(scan, wide, sample[target.name], "binary", cfg.seed)
        out["width"].append(scan_record(found, clock))

    log("inference: schema_infer.infer on the whole raw table", "leakage")
    schema, clock = timed(infer, raw, target.name, "binary", cfg.data.time_column,
                          dict(cfg.data.derive), seed=cfg.seed)
    out["inference"] = {"rows": schema.rows, "columns": raw.shape[1], **clock,
                        "excluded": [e.__dict__ for e in schema.excluded]}
    out["machine"] = {"python": platform.python_version(), "cores": os.cpu_count(),
                      "scikit-learn": package_version("scikit-learn"),
                      "pandas": package_version("pandas")}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
