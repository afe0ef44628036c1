"""A registered model unpickles with the shared package alone (no task or flow code)."""

from __future__ import annotations

import subprocess
import sys

from tests.serve.conftest import MODEL, ServedProject


def test_loading_a_model_imports_no_task_or_flow_code(served_project: ServedProject) -> None:
    code = (
        "import sys\n"
        "from prefab_mlops.core.registry import ModelRegistry\n"
        "from prefab_mlops.core.storage import LocalObjectStore\n"
        f"m = ModelRegistry(LocalObjectStore({str(served_project.registry)!r}))"
        f".load({MODEL!r}, version=1).model\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('tasks', 'flows', 'prefect'))\n"
        "assert not bad, bad\n"
        "print(type(m).__name__)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "Pipeline"
