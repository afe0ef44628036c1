"""Remove what a failed project generation wrote, and only that.

Copier deletes the destination of a failed ``copier copy`` only when it created that
directory. A project can also be generated into a folder that already holds files (a
``git init``-ed repository, the data the project is for), and then a generation that
stops (the data does not fit the answers) would leave every generated file among
them. Before it writes anything, the template (``copier.yml``) lists the regular files
already present where it writes (its ``template_globs``); when its data check fails, it
runs this module, which removes the regular files those globs match now that were not
in that list, then the directories that removing them left empty. Nothing outside the
globs is looked at, and a file that was there before stays, even if Copier overwrote it
with your consent.

Examples::

    # what the template runs (from the project directory) when its data check fails
    python -m prefab_mlops.scaffold.cleanup --existing '["notes.md"]' '*' '.*' 'conf/*/*'
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path


def matching_files(root: Path, patterns: Iterable[str]) -> set[str]:
    """Regular files under ``root`` matched by ``patterns``, relative to ``root``.

    The same files as the template's ``fileglob`` filter finds before it writes:
    ``glob.glob`` (``*`` skips dot files) keeping what ``os.path.isfile`` accepts;
    but never one reached through a linked directory (Copier writes nothing there).
    """
    found: set[str] = set()
    for pattern in patterns:
        for path in glob.glob(pattern, root_dir=root):
            rel = Path(os.path.normpath(path))
            linked = any((root / parent).is_symlink() for parent in rel.parents)
            if os.path.isfile(root / rel) and not linked:
                found.add(str(rel))
    return found


def remove_new_files(root: Path, existing: Iterable[str],
                     patterns: Iterable[str]) -> list[str]:
    """Remove the files ``patterns`` match under ``root`` that are not in ``existing``.

    Args:
        root: The project directory.
        existing: Paths relative to ``root`` of the files that were there before.
        patterns: Globs relative to ``root`` of where the generation writes.

    Returns:
        The removed files, relative to ``root``, sorted. Directories that removing
        them left empty are removed too (``root`` itself never).
    """
    keep = {os.path.normpath(p) for p in existing}
    removed = sorted(matching_files(root, patterns) - keep)
    for rel in removed:
        (root / rel).unlink()
    parents = {parent for rel in removed for parent in Path(rel).parents if parent != Path(".")}
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        directory = root / parent
        if directory.is_dir() and not directory.is_symlink() and not any(directory.iterdir()):
            directory.rmdir()
    return removed


def main(argv: list[str] | None = None) -> int:
    """``python -m prefab_mlops.scaffold.cleanup --existing JSON PATTERN...``."""
    p = argparse.ArgumentParser(prog="python -m prefab_mlops.scaffold.cleanup",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--existing", required=True,
                   help="JSON list of the files there before (paths relative to --root), "
                   "or null when they could not be listed: then nothing is removed")
    p.add_argument("--root", type=Path, default=Path("."), help="the project directory")
    p.add_argument("patterns", nargs="+", help="globs of where the generation writes")
    args = p.parse_args(argv)
    existing = json.loads(args.existing)
    root = args.root.resolve()
    if existing is None:
        print(f"note: the files already in {root} could not be listed before generation "
              "(its path has a glob character), so no generated file was removed.",
              file=sys.stderr)
        return 0
    removed = remove_new_files(root, existing, args.patterns)
    print(f"removed the {len(removed)} files this generation wrote into {root}; the "
          f"{len(existing)} files that were there before are kept.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
