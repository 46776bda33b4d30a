"""The ``stepstream`` command: the local stack, the demo, and checking workflow files."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import httpx

from stepstream.definition import check_workflow, parse_workflow
from stepstream.errors import Problem
from stepstream.model import json_schema
from stepstream_local.stack import DEFAULT_TEMPLATE, LocalStack, port_is_free
from stepstream_local.watch import exit_code, watch

WORKFLOWS = DEFAULT_TEMPLATE.parent / "workflows"
DEMO_WORKFLOW = WORKFLOWS / "service_health_pipeline.yaml"
# The built-in health pipeline calls this address: the stack's own /health on :8000.
ORIGINAL_BASE = "http://localhost:8000"


@click.group()
@click.option("--verbose", "-v", is_flag=True, help="Show the functions' logs.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Stepstream: YAML workflows on serverless functions, locally or on AWS."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    ctx.obj = {"log_level": "INFO" if verbose else "WARNING"}


def _start(port: int, redis_url: str | None) -> LocalStack:
    log_level = click.get_current_context().find_root().obj["log_level"]
    stack = LocalStack(port=port, redis_url=redis_url, log_level=log_level)
    try:
        urls = stack.start()
    except RuntimeError as exc:
        stack.stop()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"API      {urls.api}   (OpenAPI at {urls.api}/openapi.json)")
    click.echo(f"stream   {urls.stream}/api/v1/runs/RUN_ID/stream")
    click.echo(f"AWS      {urls.aws}   (moto server: DynamoDB and SQS from template.yaml)")
    redis = stack.redis_url or "off (events follow DynamoDB alone)"
    click.echo(f"redis    {redis}")
    return stack


@main.command()
@click.option("--port", default=8000, show_default=True, help="The API's port.")
@click.option("--redis-url", default=None, help="Redis for live events (default: $REDIS_URL).")
def dev(port: int, redis_url: str | None) -> None:
    """Start the local stack and keep it running until Ctrl-C."""
    stack = _start(port, redis_url)
    click.echo("ready; Ctrl-C stops it")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        stack.stop()


def _demo_yaml(workflow: Path, api: str) -> str:
    text = workflow.read_text()
    if not api.endswith(":8000") and ORIGINAL_BASE in text:
        click.echo(f"(port 8000 is taken: the workflow's {ORIGINAL_BASE} becomes {api})")
        text = text.replace(ORIGINAL_BASE, api)
    return text


@main.command()
@click.option("--workflow", type=click.Path(exists=True, path_type=Path), default=DEMO_WORKFLOW,
              show_default=True, help="The workflow to register and run.")
@click.option("--redis-url", default=None, help="Redis for live events (default: $REDIS_URL).")
def demo(workflow: Path, redis_url: str | None) -> None:
    """Start the stack, register a workflow, run it on the queue and stream its progress."""
    port = 8000 if port_is_free("127.0.0.1", 8000) else 0
    stack = _start(port, redis_url)
    try:
        assert stack.urls is not None
        with httpx.Client(base_url=stack.urls.api, timeout=30) as client:
            yaml_content = _demo_yaml(workflow, stack.urls.api)
            created = client.post("/api/v1/workflows", json={"yaml_content": yaml_content})
            if created.status_code != 201:
                raise click.ClickException(f"registration failed: {created.text}")
            workflow_id = created.json()["id"]
            click.echo(f"registered {created.json()['name']} as {workflow_id}")
            queued = client.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}})
            click.echo(f"queued run {queued.json()['id']}")
            last = watch(client, queued.json()["id"], queued.json()["stream_url"], click.echo)
    finally:
        stack.stop()
    raise SystemExit(exit_code(last))


API_OPTION = click.option(
    "--api", default="http://127.0.0.1:8000", show_default=True, envvar="STEPSTREAM_API",
    help="Base URL of a running Stepstream API ($STEPSTREAM_API).",
)


class _Unreachable(click.ClickException):
    """No API answered: the run's outcome is unknown, as when a stream ends unsaid."""

    exit_code = 2


@contextlib.contextmanager
def _api_client(api: str) -> Iterator[httpx.Client]:
    """A client of the API at ``api``; an API that cannot be reached is a one-line error."""
    try:
        with httpx.Client(base_url=api, timeout=30) as client:
            yield client
    except httpx.TransportError as exc:
        raise _Unreachable(f"cannot reach the Stepstream API at {api}: {exc}") from exc


@main.command(name="watch")
@click.argument("run_id")
@API_OPTION
def watch_command(run_id: str, api: str) -> None:
    """Follow a run live; the exit code is its outcome.

    Exit codes: 0 completed, 1 failed (or no such run), 3 cancelled, 2 unknown: the
    stream ended without telling the outcome, or the API could not be reached.

    A failed run redriven after the watch ended: watch it again to follow the
    redrive (a watch replays the run from its start).
    """
    with _api_client(api) as client:
        if client.get(f"/api/v1/runs/{run_id}").status_code == 404:
            raise click.ClickException(f"no run {run_id} at {api}")
        raise SystemExit(exit_code(watch(client, run_id, echo=click.echo)))


def _workflow_id(client: httpx.Client, yaml_content: str, replace: bool) -> str:
    """Register the workflow, or find the registered one with the same trigger path.

    A registered one whose text differs from ``yaml_content`` is deleted and the new
    text registered with ``replace`` (its runs stay readable); without, it is run as
    it is, with a warning.
    """
    created = client.post("/api/v1/workflows", json={"yaml_content": yaml_content})
    if created.status_code == 201:
        return created.json()["id"]
    if created.status_code != 409:
        errors = created.json().get("errors") or [{"message": created.text}]
        lines = [f"{e.get('line', 1)}:{e.get('column', 1)}: {e['message']}" for e in errors]
        raise click.ClickException("the workflow was refused:\n" + "\n".join(lines))
    path = parse_workflow(yaml_content).trigger_path
    found = [w["id"] for w in client.get("/api/v1/workflows").json() if w["trigger_path"] == path]
    if not found:
        raise click.ClickException(created.json()["detail"])
    workflow_id = found[0]
    if client.get(f"/api/v1/workflows/{workflow_id}").json()["yaml_content"] == yaml_content:
        return workflow_id
    if not replace:
        click.echo(f"warning: the workflow registered at {path} ({workflow_id}) is not this "
                   "file's text; running the registered one (--replace registers the file)",
                   err=True)
        return workflow_id
    client.delete(f"/api/v1/workflows/{workflow_id}").raise_for_status()
    click.echo(f"replaced the workflow registered at {path} ({workflow_id})", err=True)
    return _workflow_id(client, yaml_content, replace=False)


@main.command(name="run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", default="{}", help="The run's input, as JSON.")
@click.option("--watch/--no-watch", "follow", default=True, help="Follow the run live.")
@click.option("--replace", is_flag=True,
              help="If another text is registered at FILE's trigger path, replace it.")
@API_OPTION
def run_command(file: Path, data: str, follow: bool, replace: bool, api: str) -> None:
    """Register FILE (or reuse it) and run it on the queue, following it live.

    With --watch the exit code is the run's outcome, as for `stepstream watch`:
    0 completed, 1 failed, 3 cancelled, 2 unknown (the API could not be reached).
    """
    try:
        payload = json.loads(data)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from exc
    with _api_client(api) as client:
        workflow_id = _workflow_id(client, file.read_text(encoding="utf-8"), replace)
        queued = client.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": payload})
        if queued.status_code != 202:
            raise click.ClickException(f"the run was refused: {queued.text}")
        run = queued.json()
        click.echo(f"run {run['id']} queued")
        if follow:
            raise SystemExit(exit_code(watch(client, run["id"], run["stream_url"], click.echo)))


def _report(path: str, kind: str, problem: Problem) -> str:
    where = f"{path}:{problem.line or 1}:{problem.column or 1}"
    step = f" [step {problem.step_id}]" if problem.step_id else ""
    return f"{where}: {kind}: {problem.message}{step}"


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check workflow files; print problems as FILE:LINE:COL like a compiler."""
    failed = False
    for path in files:
        _workflow, errors, warnings = check_workflow(Path(path).read_text(encoding="utf-8"))
        for problem in errors:
            click.echo(_report(path, "error", problem))
        for problem in warnings:
            click.echo(_report(path, "warning", problem))
        failed = failed or bool(errors)
        if not errors:
            counted = f" ({len(warnings)} warnings)" if warnings else ""
            click.echo(f"{path}: ok{counted}", err=True)
    if failed:
        raise SystemExit(1)


@main.command()
def schema() -> None:
    """Print the JSON Schema of the workflow format (schema/workflow.schema.json)."""
    click.echo(json.dumps(json_schema(), indent=2))
