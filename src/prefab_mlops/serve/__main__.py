"""``python -m prefab_mlops.serve``: serve a registered model over HTTP.

Examples::

    # the production version of sales-binary in ./registry, on port 8000
    python -m prefab_mlops.serve --registry registry --model sales-binary --port 8000

    # registry and model name from the project config (conf/register, conf/storage)
    python -m prefab_mlops.serve --port 8000
    python -m prefab_mlops.serve --port 8000 -- storage=s3      # Hydra overrides after --

    # two worker processes, log requests for drift monitoring
    python -m prefab_mlops.serve --workers 2 --request-log outputs/requests

    # require an API key on /predict, /model and /metrics (the key is read from the
    # environment, never from the command line)
    PREFAB_SERVE_API_KEY="$(cat /run/secrets/serve-key)" python -m prefab_mlops.serve

Every flag has an environment variable (``--max-rows`` ↔ ``PREFAB_SERVE_MAX_ROWS``),
which is how the container image is configured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from typing import Any

from prefab_mlops.core.errors import PrefabError
from prefab_mlops.core.registry import PRODUCTION_ALIAS
from prefab_mlops.serve.auth import DEFAULT_ENV as DEFAULT_API_KEY_ENV
from prefab_mlops.serve.settings import (
    EXTRA_FIELDS,
    LOG_FORMATS,
    UNKNOWN_CATEGORY,
    ServeSettings,
)

ENV_PREFIX = "PREFAB_SERVE_"
# Every flag's default is the setting's own (ServeSettings).
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ServeSettings)}


def _env(name: str, default: Any) -> Any:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    d = _DEFAULTS
    p = argparse.ArgumentParser(
        prog="python -m prefab_mlops.serve",
        description="Serve the production version of a registered model over HTTP: "
        "POST /predict, GET /health /ready /model /metrics. The served version follows "
        "the registry alias (hot reload).",
        epilog="examples:\n"
        "  python -m prefab_mlops.serve --registry registry --model sales-binary --port 8000\n"
        "  python -m prefab_mlops.serve --port 8000                 # registry/model from conf/\n"
        "  python -m prefab_mlops.serve --workers 2 --request-log outputs/requests\n"
        "  curl -s localhost:8000/predict -d '[{\"month\": 1, ...}]'\n"
        "  PREFAB_SERVE_API_KEY=... python -m prefab_mlops.serve --port 8000   # key required\n"
        "every flag also reads PREFAB_SERVE_<FLAG> (e.g. PREFAB_SERVE_PORT=8080)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what to serve")
    g.add_argument("--registry", default=_env("registry", None),
                   help="registry directory (default: conf/register root)")
    g.add_argument("--model", default=_env("model", None),
                   help="registered model name (default: conf/register model_name)")
    g.add_argument("--alias", default=_env("alias", None),
                   help="alias to serve and follow (default: conf/promote alias, production)")
    g.add_argument("--config-dir", default=_env("config_dir", None),
                   help="the project's conf/ directory, used when --registry or --model "
                   "is not given")
    g.add_argument("overrides", nargs="*", help="Hydra overrides for the project config "
                   "(after --), e.g. -- storage=s3")
    n = p.add_argument_group("network")
    n.add_argument("--host", default=_env("host", d["host"]),
                   help=f"interface (default {d['host']}; 0.0.0.0 in a container)")
    n.add_argument("--port", type=int, default=int(_env("port", d["port"])),
                   help=f"TCP port, 1-65535 (default {d['port']})")
    n.add_argument("--workers", type=int, default=int(_env("workers", d["workers"])),
                   help=f"worker processes sharing the port, 1-64 (default {d['workers']}; "
                   "use the number of cores)")
    a = p.add_argument_group("access")
    a.add_argument("--api-key-env", metavar="NAME", default=_env("api_key_env", None),
                   help=f"environment variable holding the API key that /predict, /model, "
                   f"/metrics and every other path but /health and /ready then require "
                   f"(header 'Authorization: Bearer <key>' or 'X-API-Key: <key>'). Default: "
                   f"{DEFAULT_API_KEY_ENV} when it is set; without either, no key. The key "
                   "itself is never a flag: command lines show in `ps`")
    r = p.add_argument_group("requests")
    r.add_argument("--max-rows", type=int, default=int(_env("max_rows", d["max_rows"])),
                   help=f"most records per request (default {d['max_rows']})")
    r.add_argument("--max-body-bytes", type=int,
                   default=int(_env("max_body_bytes", d["max_body_bytes"])),
                   help=f"largest body accepted, bytes (default {d['max_body_bytes']:,})")
    r.add_argument("--unknown-category", choices=UNKNOWN_CATEGORY,
                   default=_env("unknown_category", d["unknown_category"]),
                   help="a category the model never saw: reject with 422 or predict anyway "
                   f"and flag it in 'warnings' (default {d['unknown_category']})")
    r.add_argument("--extra-fields", choices=EXTRA_FIELDS,
                   default=_env("extra_fields", d["extra_fields"]),
                   help="fields that are neither inputs nor training-data columns "
                   f"(default {d['extra_fields']})")
    b = p.add_argument_group("speed")
    b.add_argument("--batch-max-rows", type=int,
                   default=int(_env("batch_max_rows", d["batch_max_rows"])),
                   help=f"most rows per model call (default {d['batch_max_rows']})")
    b.add_argument("--batch-wait-ms", type=float,
                   default=float(_env("batch_wait_ms", d["batch_wait_ms"])),
                   help="longest wait for requests already being read, 0-100 ms "
                   f"(default {d['batch_wait_ms']})")
    b.add_argument("--fast-path", type=_flag,
                   default=_flag(str(_env("fast_path", d["fast_path"]))),
                   help="numpy fast path when the pipeline supports it "
                   f"(default {str(d['fast_path']).lower()})")
    b.add_argument("--poll-seconds", type=float,
                   default=float(_env("poll_seconds", d["poll_seconds"])),
                   help="how often to check the alias for a new version "
                   f"(default {d['poll_seconds']})")
    lg = p.add_argument_group("request log (for drift monitoring)")
    lg.add_argument("--request-log", default=_env("request_log", None),
                    help="directory for the request log (default: off)")
    lg.add_argument("--request-log-format", choices=LOG_FORMATS,
                    default=_env("request_log_format", d["request_log_format"]))
    lg.add_argument("--request-log-rows-per-file", type=int,
                    default=int(_env("request_log_rows_per_file",
                                     d["request_log_rows_per_file"])))
    lg.add_argument("--request-log-max-files", type=int,
                    default=int(_env("request_log_max_files", d["request_log_max_files"])))
    lg.add_argument("--request-log-flush-seconds", type=float,
                    default=float(_env("request_log_flush_seconds",
                                       d["request_log_flush_seconds"])))
    p.add_argument("--log-level", default=_env("log_level", d["log_level"]),
                   choices=("debug", "info", "warning", "error"))
    p.add_argument("--print-settings", action="store_true",
                   help="print the resolved settings as JSON and exit")
    return p


def settings_from_args(args: argparse.Namespace) -> Any:
    """Resolve flags (and the project config for what they leave out) into settings."""
    registry, model, alias, storage = args.registry, args.model, args.alias, None
    if registry is None or model is None or args.overrides:
        try:
            from prefab_mlops.config import as_plain, load_config
        except ImportError:  # installed with [serve] alone: no Hydra to read conf/ with
            from prefab_mlops.serve.errors import ServeConfigError

            raise ServeConfigError(
                "Without --registry and --model the server reads them from the project's "
                "conf/, which needs the [pipeline] extra (Hydra); it is not installed.",
                fix="Pass --registry DIR --model NAME (and --alias), or "
                "pip install 'prefab-mlops[pipeline]'.") from None

        cfg = load_config(args.overrides, config_dir=args.config_dir).typed
        registry = registry or cfg.register.root
        model = model or cfg.register.model_name
        alias = alias or cfg.promote.alias
        if cfg.storage.kind != "local":
            storage = as_plain(cfg.storage)
    # an explicitly named variable must hold a key; the default one is optional, but once
    # it is set (even empty) it must hold a usable key: a missing secret never fails open
    api_key_env = args.api_key_env or (
        DEFAULT_API_KEY_ENV if DEFAULT_API_KEY_ENV in os.environ else None)
    return ServeSettings(
        registry=str(registry), model=model, alias=alias or PRODUCTION_ALIAS, storage=storage,
        host=args.host, port=args.port, workers=args.workers, poll_seconds=args.poll_seconds,
        max_rows=args.max_rows, max_body_bytes=args.max_body_bytes,
        unknown_category=args.unknown_category, extra_fields=args.extra_fields,
        batch_max_rows=args.batch_max_rows, batch_wait_ms=args.batch_wait_ms,
        fast_path=args.fast_path, request_log_dir=args.request_log,
        request_log_format=args.request_log_format,
        request_log_rows_per_file=args.request_log_rows_per_file,
        request_log_max_files=args.request_log_max_files,
        request_log_flush_seconds=args.request_log_flush_seconds, log_level=args.log_level,
        api_key_env=api_key_env)


def printable_settings(settings: Any) -> dict[str, Any]:
    """The settings as ``--print-settings`` shows them: ``api_key`` masked, never the key."""
    out = json.loads(settings.to_json())
    out["api_key"] = "********" if settings.api_key_env else None
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
        if args.print_settings:
            print(json.dumps(printable_settings(settings), indent=2))
            return 0
        from prefab_mlops.serve.server import run

        return run(settings)
    except PrefabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
