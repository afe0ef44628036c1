"""prefab_mlops.scaffold.cleanup: a stopped generation removes what it wrote, only that.

(The template runs it; tests/templates/test_project_template.py checks it end to end.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefab_mlops.scaffold.cleanup import main, matching_files, remove_new_files

GLOBS = ["*", ".*", "conf/*", "conf/*/*", "conf/*/.*", "tests/*"]


def write(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)


def paths(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


class TestRemoveNewFiles:
    def test_removes_what_was_written_and_keeps_what_was_there(self, tmp_path: Path) -> None:
        mine = ["notes.md", ".env", "conf/local/default.yaml", "data/sales.csv"]
        write(tmp_path, *mine)
        existing = matching_files(tmp_path, GLOBS)
        assert existing == {"notes.md", ".env", "conf/local/default.yaml"}  # data/: no glob
        written = ["Makefile", ".gitignore", "conf/pipeline.yaml", "conf/data/sales.yaml",
                   "conf/local/.gitkeep", "tests/test_configs.py"]
        write(tmp_path, *written)

        removed = remove_new_files(tmp_path, existing, GLOBS)

        assert removed == sorted(written)
        # conf/data and tests were emptied (and removed); conf and conf/local still hold yours
        assert paths(tmp_path) == {"notes.md", ".env", "conf", "conf/local",
                                   "conf/local/default.yaml", "data", "data/sales.csv"}
        assert (tmp_path / "notes.md").read_text() == "notes.md"

    def test_leaves_what_no_glob_reaches(self, tmp_path: Path) -> None:
        write(tmp_path, "data/new.csv", "deep/a/b/c.txt")
        assert remove_new_files(tmp_path, [], GLOBS) == []
        assert paths(tmp_path) == {"data", "data/new.csv", "deep", "deep/a", "deep/a/b",
                                   "deep/a/b/c.txt"}

    def test_never_follows_a_link_to_a_directory(self, tmp_path: Path) -> None:
        outside = tmp_path / "outside"
        write(outside, "keep.csv")
        project = tmp_path / "project"
        project.mkdir()
        (project / "data").symlink_to(outside, target_is_directory=True)
        write(project, "Makefile")
        assert remove_new_files(project, [], GLOBS + ["*/*"]) == ["Makefile"]
        assert (outside / "keep.csv").is_file() and (project / "data").is_symlink()


class TestCommandLine:
    def test_removes_and_reports(self, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
        write(tmp_path, "notes.md", "Makefile")
        assert main(["--root", str(tmp_path), "--existing", json.dumps(["notes.md"]),
                     *GLOBS]) == 0
        assert paths(tmp_path) == {"notes.md"}
        assert "removed the 1 files" in capsys.readouterr().err

    def test_unknown_existing_files_remove_nothing(self, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
        write(tmp_path, "notes.md", "Makefile")
        assert main(["--root", str(tmp_path), "--existing", "null", *GLOBS]) == 0
        assert paths(tmp_path) == {"notes.md", "Makefile"}
        assert "no generated file was removed" in capsys.readouterr().err
