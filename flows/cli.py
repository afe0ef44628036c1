"""The stock flows' command lines: ``prefab train|monitor|score [OVERRIDES...]``.

Light on purpose: it imports argparse and the config loader only, so a wrong key or
a misspelt group option fails in well under a second with the valid options, before
Prefect, the data stack or a temporary API server is loaded. Only a config that
composes and type-checks imports the flow and runs it (see
:func:`prefab_mlops.flows.common.run_cli`).

``python -m prefab_mlops.flows.training`` (and ``.monitoring``, ``.batch_inference``)
run through here too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass

from prefab_mlops.config import load_config
from prefab_mlops.core.errors import PrefabError


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every flow's command line has (overrides, config, --debug, --json)."""
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (group=option, key=value)")
    parser.add_argument("--config-dir", default=None, help="the project's conf/ directory")
    parser.add_argument("--config-name", default="pipeline", help="its root config")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--debug", action="store_true",
                        help="on failure, show Python tracebacks (default: the cause and fix)")


def print_failure(exc: PrefabError) -> int:
    """Print a failure of ours as its cause and fix (no traceback); the exit status 2."""
    print(f"error: {type(exc).__name__}: {exc.message}", file=sys.stderr)
    if exc.fix:
        print(f"fix: {exc.fix}", file=sys.stderr)
    print("(--debug shows the traceback)", file=sys.stderr)
    return 2


@dataclass(frozen=True)
class FlowCommand:
    """One stock flow's command line; ``module.run(args, loaded)`` runs the flow."""

    name: str
    module: str
    description: str
    example: str
    batch_option: bool = False
    refresh_option: bool = False

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog=f"prefab {self.name}",
            description=f"{self.description} Positional arguments are Hydra overrides.",
            epilog=f"examples:\n  {self.example}\nalso: python -m {self.module} [ARGS...]",
            formatter_class=argparse.RawDescriptionHelpFormatter)
        add_cli_arguments(parser)
        if self.batch_option:
            parser.add_argument("--batch", default=None,
                                help="batch location (default: data.uri)")
        if self.refresh_option:
            parser.add_argument("--refresh-cache", action="store_true",
                                help="ignore cached task results and run every task afresh")
        return parser


COMMANDS = {c.name: c for c in (
    FlowCommand("train", "prefab_mlops.flows.training",
                "Train, evaluate, register and maybe promote a model.",
                "prefab train model=random_forest model.n_estimators=300\n"
                "  prefab train experiment=NAME      # conf/experiment/NAME.yaml",
                refresh_option=True),
    FlowCommand("monitor", "prefab_mlops.flows.monitoring",
                "Check a batch for drift against the production model.",
                "prefab monitor --batch data/new-batch.csv", batch_option=True),
    FlowCommand("score", "prefab_mlops.flows.batch_inference",
                "Score a batch with the production model.",
                "prefab score --batch data/new-batch.csv", batch_option=True),
)}


def main(argv: list[str] | None = None) -> int:
    """``prefab train|monitor|score [ARGS...]``: check the config, then run the flow."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: prefab {{{','.join(COMMANDS)}}} [OVERRIDES...] [--help]",
              file=sys.stderr)
        return 2
    command = COMMANDS[argv[0]]
    args = command.parser().parse_args(argv[1:])
    try:
        loaded = load_config(args.overrides, args.config_name, args.config_dir)
    except PrefabError as exc:
        if args.debug:
            raise
        return print_failure(exc)
    code: int = importlib.import_module(command.module).run(args, loaded)
    return code


if __name__ == "__main__":
    sys.exit(main())
