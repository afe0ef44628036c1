"""Add a deployment entry to a project's ``prefect.yaml`` without rewriting the file.

``templates/flow`` renders one deployment (a YAML list item) into a snippet file and
runs this module to insert it at the end of the ``deployments:`` section. The file is
edited as text, so its comments, anchors (``&work_pool``) and Prefect's own
``{{ event... }}`` templates stay exactly as they were; the result is parsed before it
is written, and nothing is written if it does not parse.

Examples::

    python -m prefab_mlops.scaffold.prefect_yaml add-deployment prefect.yaml snippet.yaml
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from prefab_mlops.core.errors import ConfigError, PrefabError

_TOP_LEVEL = re.compile(r"^[^\s#-][^:]*:")


def _deployments(text: str, where: str) -> list[dict[str, Any]]:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}",
                          fix="Fix the YAML (a `*alias` needs its `&anchor` earlier in the "
                          "file).") from None
    deployments = doc.get("deployments") if isinstance(doc, dict) else None
    if not isinstance(deployments, list):
        raise ConfigError(f"{where} has no `deployments:` list.",
                          fix="Add a top-level `deployments:` section.")
    return deployments


def add_deployment(prefect_yaml: str, snippet: str) -> tuple[str, bool]:
    """Insert ``snippet`` (one indented ``- name: ...`` item) into ``deployments:``.

    Args:
        prefect_yaml: The text of ``prefect.yaml``.
        snippet: The deployment as it should appear under ``deployments:``.

    Returns:
        The new text and whether it changed (``False`` when a deployment with the
        same name and entrypoint is already there).

    Raises:
        ConfigError: the file has no ``deployments:`` section, or a deployment with
            the same name but another entrypoint exists, or the result does not parse.
    """
    current = _deployments(prefect_yaml, "prefect.yaml")
    item = yaml.safe_load(re.sub(r"\*\w+", "null", snippet))
    if not (isinstance(item, list) and len(item) == 1 and isinstance(item[0], dict)
            and item[0].get("name") and item[0].get("entrypoint")):
        raise ConfigError("The deployment snippet is not one list item with a name and an "
                          "entrypoint.", fix="Check the template that rendered it.")
    new = item[0]
    for dep in current:
        if dep.get("name") == new["name"]:
            if dep.get("entrypoint") == new["entrypoint"]:
                return prefect_yaml, False
            raise ConfigError(
                f"prefect.yaml already has a deployment '{new['name']}' for "
                f"{dep.get('entrypoint')}.",
                fix="Choose another deployment name (the deployment_name answer).")
    lines = prefect_yaml.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("deployments:"))
    end = len(lines)
    for i in range(start + 1, len(lines)):
        if _TOP_LEVEL.match(lines[i]):
            end = i
            break
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    if lines[end - 1] and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    block = "\n" + snippet.strip("\n") + "\n"
    text = "".join(lines[:end]) + block + "".join(lines[end:])
    after = _deployments(text, "prefect.yaml with the new deployment")
    if len(after) != len(current) + 1 or after[-1].get("name") != new["name"]:
        raise ConfigError("Inserting the deployment did not give one more deployment.",
                          fix="Add it to prefect.yaml by hand.")
    return text, True


def main(argv: list[str] | None = None) -> int:
    """``python -m prefab_mlops.scaffold.prefect_yaml add-deployment PREFECT_YAML SNIPPET``."""
    p = argparse.ArgumentParser(prog="python -m prefab_mlops.scaffold.prefect_yaml",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add-deployment", help="insert a deployment into prefect.yaml")
    add.add_argument("prefect_yaml", type=Path)
    add.add_argument("snippet", type=Path, help="rendered deployment; deleted once inserted")
    args = p.parse_args(argv)
    try:
        text, changed = add_deployment(args.prefect_yaml.read_text(), args.snippet.read_text())
    except (PrefabError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if changed:
        args.prefect_yaml.write_text(text)
    print(f"{'added' if changed else 'already present:'} deployment from {args.snippet} "
          f"in {args.prefect_yaml}", file=sys.stderr)
    args.snippet.unlink()
    if not any(args.snippet.parent.iterdir()):
        args.snippet.parent.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
