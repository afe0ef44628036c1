"""``prefab``: run the stock flows; inspect the model registry, promote and roll back.

Examples::

    prefab train model=random_forest           # the training flow (config checked first)
    prefab monitor --batch data/new.csv        # a drift check; prefab score: batch scoring
    prefab registry list                       # every model, its versions and aliases
    prefab registry show sales-binary 3        # one version's manifest (--json)
    prefab registry check                      # verify every version; --repair cleans up
    prefab promote sales-binary 3              # point production at v3
    prefab rollback sales-binary               # production back to the previous version
    prefab history sales-binary                # the audit log
    prefab reproduce sales-binary@3            # retrain v3 from its record, compare sha256
    prefab schema infer data/sales.csv --target churned   # propose conf/validate + features

The registry location comes from the project's config (``conf/register`` and
``conf/storage``); pass Hydra overrides after ``--`` e.g. ``-- storage=s3``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from prefab_mlops.config import load_config
from prefab_mlops.core.errors import PrefabError
from prefab_mlops.core.manifest import GateRecord
from prefab_mlops.core.registry import PROMOTE_EVENT, ModelRegistry
from prefab_mlops.core.storage import object_store


def _registry(args: argparse.Namespace) -> tuple[ModelRegistry, Any]:
    cfg = load_config(args.overrides, config_dir=args.config_dir).typed
    return ModelRegistry(object_store(cfg.storage, cfg.register.root, "registry")), cfg


def _model(args: argparse.Namespace, cfg: Any) -> str:
    return args.model or cfg.register.model_name


def _alias_target(args: argparse.Namespace) -> tuple[ModelRegistry, str, str]:
    """The registry, model and alias a promote/rollback command acts on."""
    reg, cfg = _registry(args)
    return reg, _model(args, cfg), args.alias or cfg.promote.alias


def _print(obj: Any, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if as_json else text)


def _gate_text(gate: GateRecord | None) -> str:
    """``ok``/``FAIL`` and the rules that decided, e.g. ``ok(baseline)``; ``-`` without one."""
    if gate is None:
        return "-"
    rules = ",".join(gate.decided_by)
    return ("ok" if gate.passed else "FAIL") + (f"({rules})" if rules else "")


def _decision_text(event: dict[str, Any] | None) -> str:
    if event is None:
        return "-"
    return "promoted" if event["event"] == PROMOTE_EVENT else "declined"


def cmd_list(args: argparse.Namespace) -> int:
    reg, cfg = _registry(args)
    names = [args.model] if args.model else reg.models()
    out = []
    lines = []
    for name in names:
        aliases = reg.aliases(name)
        by_version: dict[int, list[str]] = {}
        for a, st in aliases.items():
            by_version.setdefault(st.version, []).append(a)
        decisions = reg.decisions(name)
        versions = reg.versions(name)
        evaluations = reg.latest_evaluations(name, versions)
        for v in versions:
            # a version shows its latest evaluation and the latest decision on it
            latest = evaluations[v.version]
            m = {k: round(val, 4) for k, val in latest.metrics.items() if k != "n_test"}
            decision = decisions.get(v.version)
            out.append({"model": name, "version": v.version, "created_at": v.created_at,
                        "aliases": sorted(by_version.get(v.version, [])), "metrics": m,
                        "gate_passed": latest.gate.passed if latest.gate else None,
                        "gate": latest.gate.summary if latest.gate else None,
                        "evaluated_at": latest.at,
                        "decision": None if decision is None else {
                            "event": decision["event"], "reason": decision.get("reason"),
                            "at": decision.get("at")}})
            lines.append(f"{name} v{v.version:<4} {v.created_at[:19]}  "
                         f"{','.join(sorted(by_version.get(v.version, []))) or '-':<22} "
                         f"gate={_gate_text(latest.gate)}  "
                         f"decision={_decision_text(decision)}  {m}")
    _print(out, args.json, "\n".join(lines) or "no registered models")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    reg, cfg = _registry(args)
    name = _model(args, cfg)
    if args.version is None:
        state = reg.alias(name, cfg.promote.alias)
        if state is None:
            raise PrefabError(f"Model '{name}' has no {cfg.promote.alias} version.",
                              fix="Give a version number: prefab registry show MODEL N")
        version = state.version
    else:
        version = args.version
    mv = reg.get_version(name, version)
    data = mv.to_json()
    if not args.json:
        data.pop("config", None)
    # the manifest keeps the evaluation it was registered with; later runs append theirs
    evaluations = reg.evaluations(mv)
    data["latest_evaluation"] = evaluations[-1].to_json()
    data["evaluations"] = len(evaluations)
    decision = reg.decisions(name).get(version)
    data["latest_decision"] = decision
    print(json.dumps(data, indent=2, default=str))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from prefab_mlops.core.registry_check import check_registry, repair_registry

    reg, _ = _registry(args)
    if args.repair:
        report = repair_registry(reg, args.model, grace_s=args.grace)
        repairs, problems = report.repairs, report.remaining
    else:
        repairs, problems = [], check_registry(reg, args.model, grace_s=args.grace)
    if args.json:
        print(json.dumps({
            "ok": not problems,
            "problems": [{"model": p.model, "kind": p.kind.value, "key": p.key,
                          "detail": p.detail, "repairable": p.repairable}
                         for p in problems],
            "repairs": [{"model": r.model, "kind": r.kind.value if r.kind else None,
                         "key": r.key, "action": r.action} for r in repairs]}, indent=2))
    else:
        for r in repairs:
            print(f"repaired {r.line()}")
        for p in problems:
            print(p.line())
        if not problems:
            print("registry ok")
        elif not args.repair and any(p.repairable for p in problems):
            print("(run with --repair to fix the repairable ones)", file=sys.stderr)
    return 1 if problems else 0


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def cmd_promote(args: argparse.Namespace) -> int:
    reg, name, alias = _alias_target(args)
    state = reg.set_alias(name, alias, args.version, reason=args.reason,
                          event=PROMOTE_EVENT)
    _print(asdict(state), args.json, f"{name}: {alias} -> v{state.version} "
           f"(was {('v' + str(state.history[-1])) if state.history else 'unset'})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    reg, name, alias = _alias_target(args)
    before = reg.alias(name, alias)
    state = reg.rollback(name, alias, reason=args.reason)
    _print(asdict(state), args.json, f"{name}: {alias} rolled back from "
           f"v{before.version if before else '?'} to v{state.version}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    reg, cfg = _registry(args)
    name = _model(args, cfg)
    events = reg.events(name)
    def line(e: dict[str, Any]) -> str:
        prev = f"(from v{e['previous']})" if e.get("previous") else ""
        return (f"{e['at'][:23]}  {e['event']:<18} v{e.get('version')}  "
                f"{e.get('alias') or ''} {prev} {e.get('reason') or ''}")

    lines = [line(e) for e in events]
    _print(events, args.json, "\n".join(lines) or "no events")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from prefab_mlops.flows.reproduce import reproduce

    name, _, number = args.target.rpartition("@")
    if not name or not number.isdigit():
        raise PrefabError(f"'{args.target}' is not MODEL@VERSION.",
                          fix="Name a registered version, e.g. prefab reproduce "
                          "sales-binary@3 (prefab registry list shows them).")
    result = reproduce(name, int(number), args.overrides, args.config_dir, args.keep)
    _print(result.as_dict(), args.json, result.render())
    return 0 if result.identical else 1


def cmd_schema_infer(args: argparse.Namespace) -> int:
    from prefab_mlops.scaffold.schema_infer import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prefab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config-dir", default=None, help="the project's conf/ directory")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True)

    from prefab_mlops.flows.cli import COMMANDS

    for command in COMMANDS.values():  # parsed by prefab_mlops.flows.cli (see main)
        sub.add_parser(command.name, help=command.description.rstrip(".").lower()
                       + " (prefab " + command.name + " --help)")
    reg = sub.add_parser("registry", help="inspect the model registry")
    reg_sub = reg.add_subparsers(dest="registry_command", required=True)
    ls = reg_sub.add_parser("list", parents=[common], help="versions and aliases")
    ls.add_argument("model", nargs="?")
    ls.set_defaults(func=cmd_list)
    show = reg_sub.add_parser("show", parents=[common],
                              help="one version's manifest (default: production)")
    show.add_argument("model", nargs="?")
    show.add_argument("version", nargs="?", type=int)
    show.set_defaults(func=cmd_show)
    from prefab_mlops.core.registry_check import DEFAULT_GRACE_S

    ck = reg_sub.add_parser(
        "check", parents=[common], help="verify every version; --repair removes leftovers",
        description="Verify every version of MODEL (default: every model): the manifest\n"
        "parses, its files exist, the model's sha256 matches, the aliases point at existing\n"
        "versions with every move recorded, and the lineage index is consistent. Prints one\n"
        "line per problem. Exit status: 0 no problem, 1 problems, 2 error.",
        epilog="examples:\n"
        "  prefab registry check\n"
        "  prefab registry check sales-binary --json\n"
        "  prefab registry check --repair              # orphans older than an hour\n"
        "  prefab registry check --repair --grace 0    # no writer is running",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ck.add_argument("model", nargs="?", help="one model (default: every model)")
    ck.add_argument("--repair", action="store_true",
                    help="remove orphaned blobs and partial writes, rebuild the lineage index "
                    "and unwritten audit events; never touches a complete version")
    ck.add_argument("--grace", type=_seconds, default=DEFAULT_GRACE_S, metavar="SECONDS",
                    help="leftovers younger than this may belong to a write still under way and "
                    f"are left alone (default: {DEFAULT_GRACE_S:.0f})")
    ck.set_defaults(func=cmd_check)

    pr = sub.add_parser("promote", parents=[common], help="point an alias at a version")
    pr.add_argument("model")
    pr.add_argument("version", type=int)
    pr.add_argument("--alias", default=None, help="default: promote.alias (production)")
    pr.add_argument("--reason", default="manual promotion")
    pr.set_defaults(func=cmd_promote)

    rb = sub.add_parser("rollback", parents=[common],
                        help="move an alias back to its previous version")
    rb.add_argument("model", nargs="?")
    rb.add_argument("--alias", default=None, help="default: promote.alias (production)")
    rb.add_argument("--reason", default="manual rollback")
    rb.set_defaults(func=cmd_rollback)

    hi = sub.add_parser("history", parents=[common],
                        help="the audit log: registrations, promotions, rollbacks")
    hi.add_argument("model", nargs="?")
    hi.set_defaults(func=cmd_history)

    from prefab_mlops.scaffold.schema_infer import add_arguments

    rp = sub.add_parser("reproduce", parents=[common],
                        help="train a registered version again from its record and "
                        "compare sha256 (exit 1 if not identical)")
    rp.add_argument("target", metavar="MODEL@VERSION")
    rp.add_argument("--keep", default=None,
                    help="keep the reproduction's files under this directory")
    rp.set_defaults(func=cmd_reproduce)
    sc = sub.add_parser("schema", help="infer a data contract and feature lists from data")
    sc_sub = sc.add_subparsers(dest="schema_command", required=True)
    infer = sc_sub.add_parser(
        "infer", help="propose conf/validate/NAME.yaml and conf/features/NAME.yaml",
        description="Read a CSV/Parquet data set as the training flow does and propose its "
        "validation schema (dtypes, nulls; the observed ranges and values as soft "
        "expected_* rules that only warn) and feature lists (without row indexes, ids, "
        "free text, constants and the columns that determine a derived target; each is "
        "named with its reason).",
        epilog="examples:\n"
        "  prefab schema infer data/sales.csv --target churned\n"
        "  prefab schema infer data/sales.csv --target churned --keep store_id\n"
        "  prefab schema infer s3://bucket/sales.parquet --target amount "
        "--problem-type regression --json\n"
        "  prefab schema infer --dataset sales --write --force   # from conf/data/sales.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(infer)
    infer.set_defaults(func=cmd_schema_infer)
    return p




def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from prefab_mlops.flows.cli import COMMANDS
    from prefab_mlops.flows.cli import main as flow_main

    if argv and argv[0] in COMMANDS:
        return flow_main(argv)
    overrides: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, overrides = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    args.overrides = overrides
    try:
        return int(args.func(args))
    except PrefabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
