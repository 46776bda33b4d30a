"""The stepstream command's file checks and the shipped schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stepstream.model import json_schema
from tests.conftest import CASES, ROOT, WORKFLOWS

STEPSTREAM = Path(sys.executable).parent / "stepstream"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([STEPSTREAM, *args], capture_output=True, text=True, check=False)


def test_validate_builtin_workflows_is_clean() -> None:
    """Each built-in workflow validates with no error and no warning."""
    result = _run("validate", *sorted(str(p) for p in WORKFLOWS.glob("*.yaml")))

    assert result.returncode == 0, result.stdout
    assert result.stdout == ""
    assert result.stderr.count(": ok") == 4


def test_validate_broken_file_prints_compiler_style_errors(tmp_path: Path) -> None:
    """A broken file gives FILE:LINE:COL: error lines and a non-zero exit."""
    broken = tmp_path / "broken.yaml"
    text = (CASES / "C08.yaml").read_text().replace('message: "low priority"', "mesage: x")
    broken.write_text(text)

    result = _run("validate", str(broken))

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"{broken}:14:5: error: duplicate key 'on_true'" in lines[0]
    assert any("unknown key 'mesage'; did you mean 'message'?" in line for line in lines)


def test_shipped_schema_is_the_models_schema() -> None:
    """schema/workflow.schema.json is what the model generates today."""
    shipped = json.loads((ROOT / "schema" / "workflow.schema.json").read_text())

    assert shipped == json_schema()
    assert set(shipped["$defs"]) >= {"HttpStep", "LlmStep", "ConditionStep", "NotifyStep"}
