"""Plug a step into a project's training flow: add its name to ``- steps: [...]``.

``templates/task`` writes a task and its step (``conf/steps/<name>.yaml``), then runs
this module to list the step in the defaults of ``conf/pipeline.yaml``, after the
steps already there (the list is their running order). The file is edited as text, so
its comments stay; the result is parsed before it is written, and nothing is written
if it does not parse.

Examples::

    python -m prefab_mlops.scaffold.steps plug conf/pipeline.yaml clip_outliers
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

from prefab_mlops.core.errors import ConfigError, PrefabError

_STEPS_LINE = re.compile(r"^(?P<head>[ \t]*-[ \t]*steps[ \t]*:[ \t]*)\[(?P<names>[^\]\n]*)\]",
                         re.MULTILINE)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _listed(text: str) -> list[str] | None:
    """The steps of the defaults list of a ``pipeline.yaml`` (None: no ``steps`` entry)."""
    doc = yaml.safe_load(text)
    defaults = doc.get("defaults") if isinstance(doc, dict) else None
    for entry in defaults if isinstance(defaults, list) else []:
        if isinstance(entry, dict) and "steps" in entry:
            value = entry["steps"]
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return None


def plug(pipeline_yaml: str, name: str) -> tuple[str, bool]:
    """Add ``name`` to the ``- steps: [...]`` entry of a ``pipeline.yaml``'s defaults.

    Args:
        pipeline_yaml: The text of ``conf/pipeline.yaml``.
        name: The step (``conf/steps/<name>.yaml``).

    Returns:
        The new text and whether it changed (``False`` when the step is listed already).

    Raises:
        ConfigError: the name is not a step name, the defaults have no one-line
            ``- steps: [...]`` entry, or the result does not parse.
    """
    if not _NAME.match(name):
        raise ConfigError(f"'{name}' is not a step name (a lowercase Python identifier).",
                          fix="Use the task_name answer of templates/task.")
    try:
        before = _listed(pipeline_yaml)
    except yaml.YAMLError as exc:
        raise ConfigError(f"conf/pipeline.yaml is not valid YAML: {exc}",
                          fix="Fix the YAML, then run this again.") from None
    fix = (f"List the step in the defaults of conf/pipeline.yaml yourself, on one line: "
           f"`  - steps: [{name}]` (after `- orchestration: ...`).")
    match = _STEPS_LINE.search(pipeline_yaml)
    if before is None or match is None:
        raise ConfigError("conf/pipeline.yaml has no one-line `- steps: [...]` entry in its "
                          "defaults list.", fix=fix)
    if name in before:
        return pipeline_yaml, False
    names = [n.strip() for n in match["names"].split(",") if n.strip()]
    text = (pipeline_yaml[:match.start()] + f"{match['head']}[{', '.join([*names, name])}]"
            + pipeline_yaml[match.end():])
    if _listed(text) != [*before, name]:
        raise ConfigError("Adding the step to conf/pipeline.yaml did not list it after the "
                          f"others ({before}).", fix=fix)
    return text, True


def main(argv: list[str] | None = None) -> int:
    """``python -m prefab_mlops.scaffold.steps plug PIPELINE_YAML NAME``."""
    p = argparse.ArgumentParser(prog="python -m prefab_mlops.scaffold.steps",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("plug", help="list a step in the defaults of conf/pipeline.yaml")
    add.add_argument("pipeline_yaml", type=Path)
    add.add_argument("name", help="the step, conf/steps/<name>.yaml")
    args = p.parse_args(argv)
    try:
        text, changed = plug(args.pipeline_yaml.read_text(), args.name)
    except (PrefabError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if changed:
        args.pipeline_yaml.write_text(text)
    print(f"{'plugged in' if changed else 'already plugged in:'} step {args.name} "
          f"({args.pipeline_yaml}: steps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
