"""One measured run in a fresh process: ``python -m bench._worker MODE --out FILE ...``.

``bench/training.py`` starts one of these per measurement, so every figure is
taken the way a user pays it (``make train`` is a fresh process each time), and
the peak RSS of each run is its own. Module imports and a read of the data file
(to warm the OS page cache) happen *before* the clock starts and are the same for
every mode, so ``plain`` and ``flow`` differ only in what the clock covers:

* ``plain``: :func:`bench._plain.run_plain` (each task's ``.fn``, no Prefect);
* ``flow``: :func:`prefab_mlops.flows.training.training` (Prefect engine, whatever
  ``PREFECT_API_URL`` says: the benchmark's server, or ephemeral when unset),
  called inside :func:`prefab_mlops.orchestration.runtime.in_process_run` exactly as
  ``python -m prefab_mlops.flows.training`` (``make train``) calls it;
* ``noop``: a flow of ten no-op tasks, Prefect's fixed per-run cost;
* ``warm``: the flow run twice in this process; the clock covers the second call
  only (a sweep or notebook that calls the flow again, with Prefect, Hydra and
  the data already warm).

``--prefect-defaults`` leaves ``in_process_run`` out, so the run keeps Prefect's
default flow-run heartbeats (what a worker-started run does).

The result (seconds, peak RSS, phase timings, flow run id) is written as JSON to
``--out``; logs go to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from contextlib import nullcontext
from pathlib import Path

# Modules the tasks import lazily. Imported here, outside the clock, for both modes
# alike, so neither plain nor flow pays a one-off import inside its measurement.
WARM_PAUSE_S = 3.0

_WARM_IMPORTS = ("prefect", "prefab_mlops.flows.training", "bench._plain", "xgboost",
                 "pandera.pandas",
                 "matplotlib.figure", "matplotlib.backends.backend_agg", "pyarrow.parquet",
                 "sklearn.metrics", "hydra", "hydra.utils")


def _peak_rss_mb() -> dict[str, float]:
    """Peak RSS of this process: VmHWM of its own address space.

    ``ru_maxrss`` is reported too, but after fork/vfork + exec Linux folds the
    parent's high-water mark into it, so it can overstate a small child.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    hwm = own
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    except OSError:
        pass
    return {"self": round(hwm, 1), "ru_maxrss": round(own, 1), "children": round(kids, 1)}


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all threads) and its waited children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def _noop_flow(overrides: list[str]) -> int:
    """Prefect's fixed cost: a flow with one no-op task per pipeline step, no results."""
    from prefect import flow, task

    steps = ["ingest", "validate", "featurize", "check-leakage", "train", "evaluate",
             "load-production", "evaluate-champion", "register", "promote"]

    @task(persist_result=False)
    def step(i: int) -> int:
        return i + 1

    @flow(name="bench-noop")
    def noop(overrides: list[str]) -> int:
        value = 0
        for name in steps:
            value = step.with_options(name=name)(value)
        return value

    return noop(overrides)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench._worker")
    p.add_argument("mode", choices=["plain", "flow", "noop", "warm"])
    p.add_argument("--out", required=True, help="where to write the JSON result")
    p.add_argument("--overrides", required=True, help="Hydra overrides as a JSON list")
    p.add_argument("--config-dir", default=None)
    p.add_argument("--warm-file", default=None, help="a data file to read once, unclocked")
    p.add_argument("--profile", default=None, help="write cProfile stats of the run here")
    p.add_argument("--prefect-defaults", action="store_true",
                   help="run without in_process_run (Prefect's default heartbeats)")
    args = p.parse_args(argv)
    overrides = json.loads(args.overrides)

    t0 = time.perf_counter()
    import importlib

    for mod in _WARM_IMPORTS:
        importlib.import_module(mod)
    import_s = time.perf_counter() - t0
    if args.warm_file:
        Path(args.warm_file).read_bytes()
    gc.collect()

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    out: dict = {"mode": args.mode, "import_s": round(import_s, 3)}
    from prefab_mlops.orchestration.runtime import in_process_run

    settings = nullcontext() if args.prefect_defaults else in_process_run()
    out["prefect_defaults"] = args.prefect_defaults
    with settings:  # entered outside the clock
        if args.mode == "warm":
            from prefab_mlops.flows.training import training

            first = time.perf_counter()
            training(overrides=overrides, config_dir=args.config_dir)
            out["first_call_s"] = round(time.perf_counter() - first, 3)
            gc.collect()
            # A fresh process takes about 3 s to start. Without a pause the server is
            # still writing the first run's events and logs, and on SQLite the next
            # flow-run creation then gets "503 database is locked" and retries ~2 s later.
            time.sleep(WARM_PAUSE_S)
        cpu0 = _cpu_s()
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        if args.mode == "plain":
            from bench._plain import run_plain

            res = run_plain(overrides, args.config_dir)
            elapsed = time.perf_counter() - start
            out.update(phases=res["phases"], rows=res["rows"], version=res["version"],
                       metrics=res["metrics"])
        elif args.mode == "noop":
            n_tasks = _noop_flow(overrides)
            elapsed = time.perf_counter() - start
            out.update(tasks=n_tasks)
        else:
            from prefab_mlops.flows.training import training

            summary = training(overrides=overrides, config_dir=args.config_dir)
            elapsed = time.perf_counter() - start
            out.update(flow_run_id=summary["flow_run_id"], rows=summary["data"]["rows"],
                       version=summary["version"], metrics=summary["metrics"],
                       promoted=summary["decision"]["promote"])
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    out.update(seconds=round(elapsed, 3), cpu_s=round(_cpu_s() - cpu0, 3),
               peak_rss_mb=_peak_rss_mb())
    Path(args.out).write_text(json.dumps(out, default=str))
    print(f"[bench worker] {args.mode} run took {elapsed:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
