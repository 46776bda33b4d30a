"""template.yaml: it lints, its handlers import, and its wiring is what the code expects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stepstream_local.cfn import Template
from tests.conftest import ROOT

TEMPLATE = ROOT / "template.yaml"
FUNCTIONS = ["ApiFunction", "ExecutorFunction", "StreamFunction"]


@pytest.fixture(scope="module")
def template() -> Template:
    """The template, loaded as the local stack loads it."""
    return Template.load(TEMPLATE, {})


def test_template_passes_cfn_lint() -> None:
    """cfn-lint finds nothing to report in template.yaml."""
    lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([lint, str(TEMPLATE)], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stdout + result.stderr


def test_template_passes_sam_validate_lint() -> None:
    """SAM's own validation (offline, with its linter) accepts template.yaml."""
    sam = ROOT / ".venv-sam" / "bin" / "sam"
    assert sam.exists(), "aws-sam-cli is missing: `make test` installs it into .venv-sam"
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        [sam, "validate", "--lint", "--region", "us-east-1", "--template", str(TEMPLATE)],
        capture_output=True, text=True, check=False, env=env, cwd=ROOT,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def _import_in_fresh_interpreter(code_dir: Path, statement: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "REDIS"))}
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(code_dir)!r}); {statement}"],
        capture_output=True, text=True, check=False, env=env, cwd=code_dir,
    )


@pytest.mark.parametrize("logical_id", ["ApiFunction", "ExecutorFunction"])
def test_handlers_named_in_the_template_import(template: Template, logical_id: str) -> None:
    """Each Handler setting names a callable that imports with no AWS configuration."""
    code_dir = ROOT / template.function_setting(logical_id, "CodeUri")
    module, _, attribute = template.function_setting(logical_id, "Handler").rpartition(".")

    result = _import_in_fresh_interpreter(
        code_dir, f"import {module}; assert callable({module}.{attribute})"
    )

    assert result.returncode == 0, result.stderr


def test_stream_function_starts_the_app_its_environment_names(template: Template) -> None:
    """The Web Adapter runs run.sh, which serves STREAM_ASGI_APP; both exist."""
    code_dir = ROOT / template.function_setting("StreamFunction", "CodeUri")
    script = code_dir / template.function_setting("StreamFunction", "Handler")
    env = template.resources("AWS::Serverless::Function")["StreamFunction"]["Properties"]
    module, _, attribute = env["Environment"]["Variables"]["STREAM_ASGI_APP"].partition(":")

    result = _import_in_fresh_interpreter(code_dir, f"from {module} import {attribute}")

    assert os.access(script, os.X_OK)
    assert "STREAM_ASGI_APP" in script.read_text()
    assert result.returncode == 0, result.stderr


def test_every_setting_the_engine_reads_comes_from_the_template(template: Template) -> None:
    """WORKFLOWS_TABLE, RUNS_TABLE, EVENTS_TABLE, RUN_QUEUE_URL and REDIS_URL are wired."""
    needed = {"WORKFLOWS_TABLE", "RUNS_TABLE", "EVENTS_TABLE", "RUN_QUEUE_URL", "REDIS_URL"}
    variables = template.body["Globals"]["Function"]["Environment"]["Variables"]

    assert needed <= set(variables)


def test_queue_outlives_the_executor_and_redrives_to_the_dead_letter_queue(
    template: Template,
) -> None:
    """The visibility timeout exceeds the executor's timeout; failures end in the DLQ."""
    queue = template.body["Resources"]["RunQueue"]["Properties"]
    executor_timeout = template.function_setting("ExecutorFunction", "Timeout")
    events = template.body["Resources"]["ExecutorFunction"]["Properties"]["Events"]

    assert queue["VisibilityTimeout"] >= 6 * executor_timeout  # AWS's advice, and case C10
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["RunDeadLetterQueue", "Arn"]
    }
    assert events["RunQueue"]["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_stream_url_streams_through_the_web_adapter(template: Template) -> None:
    """The stream's function URL defaults to RESPONSE_STREAM and the adapter is layered in."""
    props = template.body["Resources"]["StreamFunction"]["Properties"]
    env = props["Environment"]["Variables"]

    assert template.parameters["StreamInvokeMode"] == "RESPONSE_STREAM"
    assert props["FunctionUrlConfig"]["InvokeMode"] == {"Ref": "StreamInvokeMode"}
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert any("LambdaAdapterLayer" in str(layer) for layer in props["Layers"])
