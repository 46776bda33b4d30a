"""API function: HTTP API (API Gateway v2) events in, the workflow and run routes out."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Literal

import api_errors
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from stepstream import Engine, Settings, run_view, workflow_view
from stepstream.errors import StepstreamError
from stepstream.request_keys import start_once
from stepstream.service import Budget

logger = Logger(service="stepstream-api")
# The request header that makes starting a run idempotent (see stepstream.request_keys).
IDEMPOTENCY_KEY = "idempotency-key"
# How the routes that start runs describe it in /openapi.json (docstrings do not go there).
IDEMPOTENCY_DESCRIPTION = (
    "Optional `Idempotency-Key` header (1 to 255 characters, else 400): a repeat of the "
    "request with the same key for the same workflow within 24 hours starts no run and "
    "returns the first request's run as it is now, with the same status and "
    "`Idempotent-Replayed: true`; the same key with a different input, or on another "
    "of the routes that start runs, is a 422; a repeat "
    "while the first request is still creating its run may get a 409 (retry)."
)
# What a run's status can be, so a filter by anything else is a 422, not an empty list.
RunStatus = Literal["queued", "running", "completed", "failed", "cancelled"]
app = APIGatewayHttpResolver(enable_validation=True)
app.enable_swagger(path="/docs", title="Stepstream API", version="0.1.0")
api_errors.install(app)


class WorkflowCreate(BaseModel):
    """A workflow to register."""

    yaml_content: str = Field(description="The workflow's YAML text")


class RunInput(BaseModel):
    """A run's input; steps read it as ``{trigger.body...}``."""

    data: dict[str, Any] = Field(default_factory=dict)


@cache
def engine() -> Engine:
    """The process's engine, built on first use from the function's environment."""
    return Engine(Settings.from_env())


def _run(record: dict[str, Any], detail: bool = False) -> dict[str, Any]:
    return run_view(record, detail, engine().stream_url(record["run_id"]))


def _json(
    body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body,
                    headers=headers)


def _start(
    route: str, workflow_id: str, data: Any, start: Callable[[str | None], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The run ``start`` creates, or, for a repeated ``Idempotency-Key``, the earlier one.

    Returns the run's record and the response headers that say which it is.
    """
    headers = app.current_event.headers or {}
    key = next((value for name, value in headers.items() if name.lower() == IDEMPOTENCY_KEY),
               None)
    if key is None:
        return start(None), {}
    run, replayed = start_once(engine().store, workflow_id, key, data, start, route)
    return run, {"Idempotent-Replayed": "true"} if replayed else {}


@app.get("/health")
def health() -> dict[str, str]:
    """Liveness: the function answers."""
    return {"status": "ok"}


@app.get("/openapi.json")
def openapi() -> Response[str]:
    """The OpenAPI document of this API."""
    body = app.get_openapi_json_schema(title="Stepstream API", version="0.1.0")
    return Response(200, content_types.APPLICATION_JSON, body)


@app.post("/api/v1/workflows")
def create_workflow(body: WorkflowCreate) -> Response[dict[str, Any]]:
    """Register a workflow from its YAML text."""
    return _json(workflow_view(engine().register_workflow(body.yaml_content)), status=201)


@app.get("/api/v1/workflows")
def list_workflows() -> list[dict[str, Any]]:
    """Every registered workflow, newest first."""
    return [workflow_view(record) for record in engine().store.list_workflows()]


@app.get("/api/v1/workflows/<workflow_id>")
def get_workflow(workflow_id: str) -> dict[str, Any]:
    """One workflow with its YAML text and steps."""
    return workflow_view(engine().store.get_workflow(workflow_id), detail=True)


@app.delete("/api/v1/workflows/<workflow_id>")
def delete_workflow(workflow_id: str) -> Response[None]:
    """Delete a workflow; its runs stay readable."""
    engine().store.delete_workflow(workflow_id)
    return Response(status_code=204)


# Before the execute routes: /runs/trigger/execute is a webhook, not workflow 'trigger'.
@app.post("/api/v1/runs/trigger/<path>", description=IDEMPOTENCY_DESCRIPTION)
def trigger(path: str) -> Response[dict[str, Any]]:
    """Run the workflow whose webhook path is ``/triggers/<path>`` with the request body.

    With an ``Idempotency-Key`` header, a repeat of the request within 24 hours runs
    nothing and returns the first request's run (``IDEMPOTENCY_DESCRIPTION``).
    """
    raw = app.current_event.decoded_body or ""
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        # A 400 in the shape of every other refusal ({"detail": ...}, see api_errors).
        raise StepstreamError(f"the request body is not JSON: {exc}") from exc
    workflow_id = engine().store.workflow_id_for_path(f"/triggers/{path}")
    headers = dict(app.current_event.headers or {})

    def start(run_id: str | None) -> dict[str, Any]:
        return engine().run_inline(workflow_id, data, headers, run_id=run_id, budget=_budget())

    run, replay = _start("trigger", workflow_id, data, start)
    return _json({**_run(run), "workflow_id": workflow_id}, status=200, headers=replay)


def _budget() -> Budget:
    """The time this request has left for a run (API Gateway waits 30 s at most)."""
    context = app.lambda_context
    # A sync run goes on while the request has time; only at the margin is the rest
    # queued (a step that then outlasts the request is taken up by the run's check).
    return Budget(lambda: context.get_remaining_time_in_millis() / 1000, step_allowance=0)


@app.post("/api/v1/runs/<workflow_id>/execute", description=IDEMPOTENCY_DESCRIPTION)
def execute(workflow_id: str, body: RunInput) -> Response[dict[str, Any]]:
    """Run a workflow in this request and return the finished run.

    A run that cannot finish within the request (a long retry wait, or steps that
    outlast it) goes on in the executor: it is returned ``running``, to be followed
    on its ``stream_url``. With an ``Idempotency-Key`` header, a repeat of the request
    within 24 hours runs nothing and returns the first request's run as it is now.
    """

    def start(run_id: str | None) -> dict[str, Any]:
        return engine().run_inline(workflow_id, body.data, None, run_id=run_id,
                                   budget=_budget())

    run, replay = _start("execute", workflow_id, body.data, start)
    return _json(_run(run), status=201, headers=replay)


@app.post("/api/v1/runs/<workflow_id>/execute-async", description=IDEMPOTENCY_DESCRIPTION)
def execute_async(workflow_id: str, body: RunInput) -> Response[dict[str, Any]]:
    """Queue a run for the executor and return it at once, ``queued``.

    With an ``Idempotency-Key`` header, a repeat of the request within 24 hours queues
    nothing and returns the first request's run (``IDEMPOTENCY_DESCRIPTION``).
    """

    def start(run_id: str | None) -> dict[str, Any]:
        run = engine().create_run(workflow_id, body.data, None, "queued", run_id=run_id)
        engine().enqueue_run(run["run_id"])
        return run

    run, replay = _start("execute-async", workflow_id, body.data, start)
    return _json(_run(run), status=202, headers=replay)


@app.get("/api/v1/runs/<run_id>")
def get_run(run_id: str) -> dict[str, Any]:
    """One run with its input and every step's status and output."""
    return _run(engine().store.get_run(run_id), detail=True)


@app.post("/api/v1/runs/<run_id>/cancel")
def cancel_run(run_id: str) -> Response[dict[str, Any]]:
    """Cancel a run that has not ended.

    A queued run, or one waiting to retry, ends ``cancelled`` at once (200). A run in
    progress finishes the step it is in, then ends ``cancelled`` with a
    ``run_cancelled`` event (202: the run is returned still ``running``, with
    ``cancel_requested``). A run that has ended is a 409.
    """
    record = engine().cancel_run(run_id)
    return _json(_run(record), status=200 if record["status"] == "cancelled" else 202)


@app.post("/api/v1/runs/<run_id>/redrive")
def redrive_run(run_id: str) -> Response[dict[str, Any]]:
    """Run a failed run again from the step that failed, earlier steps' outputs kept.

    The run is queued (202) and its stream goes on after its ``run_failed`` with a
    ``run_resumed`` event. A run that has not failed is a 409.
    """
    return _json(_run(engine().redrive_run(run_id)), status=202)


@app.get("/api/v1/runs")
def list_runs(
    workflow_id: Annotated[str | None, Query()] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
) -> list[dict[str, Any]]:
    """Runs newest first, filtered by workflow and status, a page at a time."""
    records = engine().store.list_runs(workflow_id, status, page, page_size)
    return [_run(record) for record in records]


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Entry point for API Gateway HTTP API (payload 2.0) events."""
    return app.resolve(event, context)
