"""The API's routes and shapes on the local stack, and its answers to bad input."""

from __future__ import annotations

import httpx

from stepstream import tokens
from stepstream_local.stack import LocalStack
from tests.conftest import WORKFLOWS
from tests.integration.conftest import health_pipeline, register, sse_events, unique


def test_workflow_crud_round_trip(api: httpx.Client) -> None:
    """Register, list, get and delete a workflow; a deleted one is a 404 after."""
    text = unique((WORKFLOWS / "document_summary.yaml").read_text(), "document_summary", "crud")
    workflow_id = register(api, text)

    listed = api.get("/api/v1/workflows").json()
    detail = api.get(f"/api/v1/workflows/{workflow_id}").json()
    deleted = api.delete(f"/api/v1/workflows/{workflow_id}")

    assert workflow_id in [w["id"] for w in listed]
    assert detail["yaml_content"] == text
    assert detail["trigger_path"] == "/triggers/document_summary_crud"
    assert [s["id"] for s in detail["steps"]] == ["fetch_doc", "summarize", "send_report"]
    assert deleted.status_code == 204
    assert api.get(f"/api/v1/workflows/{workflow_id}").status_code == 404


def test_duplicate_trigger_path_is_409_and_keeps_the_first(api: httpx.Client) -> None:
    """A second workflow on a taken trigger path is refused; the first is untouched."""
    text = unique((WORKFLOWS / "support_triage.yaml").read_text(), "support_triage", "dup")
    first = register(api, text)

    again = api.post("/api/v1/workflows", json={"yaml_content": text})

    assert again.status_code == 409
    assert "/triggers/support_triage_dup" in again.json()["detail"]
    assert api.get(f"/api/v1/workflows/{first}").status_code == 200


def test_invalid_yaml_is_422_with_line_and_column(api: httpx.Client) -> None:
    """Broken YAML is the client's mistake: a 4xx that says where, never a 500."""
    response = api.post("/api/v1/workflows", json={"yaml_content": "name: x\nsteps: [\n  - a"})

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["line"] >= 2 and error["column"] >= 1
    assert "invalid YAML" in error["message"]


def test_invalid_workflow_reports_every_problem_with_its_step(api: httpx.Client) -> None:
    """Unknown node types and jump targets are all reported at once, each with its step."""
    text = """name: broken
steps:
  - id: a
    type: teleport
  - id: b
    type: condition
    condition: "1 == 1"
    on_true: nowhere
"""
    response = api.post("/api/v1/workflows", json={"yaml_content": text})

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert {(e["step_id"], e["field"]) for e in errors} == {("a", "type"), ("b", "on_true")}
    assert {(e["line"], e["column"]) for e in errors} == {(4, 11), (8, 14)}


def test_missing_body_field_is_422_not_500(api: httpx.Client) -> None:
    """A request without yaml_content fails validation with a 422."""
    response = api.post("/api/v1/workflows", json={"yaml": "name: x"})

    assert response.status_code == 422


def test_unknown_ids_are_404(api: httpx.Client, stack: LocalStack) -> None:
    """Unknown workflows, runs, trigger paths and streams answer 404."""
    assert api.get("/api/v1/workflows/nope").status_code == 404
    assert api.get("/api/v1/runs/nope").status_code == 404
    token = tokens.issue(stack.stream_secret, "nope")
    assert api.get("/api/v1/runs/nope/stream", params={"token": token}).status_code == 404
    assert api.post("/api/v1/runs/nope/execute", json={"data": {}}).status_code == 404
    assert api.post("/api/v1/runs/nope/execute-async", json={"data": {}}).status_code == 404
    assert api.post("/api/v1/runs/trigger/nope", json={}).status_code == 404


def test_sync_execute_returns_the_finished_run_and_its_stream_replays(api: httpx.Client) -> None:
    """execute runs inline (201, completed) and the run still has a full event stream."""
    workflow_id = health_pipeline(api, "sync")

    response = api.post(f"/api/v1/runs/{workflow_id}/execute", json={"data": {"k": "v"}})

    assert response.status_code == 201
    run = response.json()
    assert (run["status"], run["steps_completed"], run["total_steps"]) == ("completed", 6, 6)
    assert run["cancel_requested"] is False
    events = sse_events(api, run["id"])
    assert events[0]["type"] == "run_started" and events[-1]["type"] == "run_completed"


def test_webhook_trigger_runs_with_the_request_body_as_input(api: httpx.Client) -> None:
    """POST /runs/trigger/{path} runs the workflow whose trigger path matches."""
    health_pipeline(api, "hook")

    response = api.post("/api/v1/runs/trigger/service_health_pipeline_hook", json={"x": [1, 2]})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "completed"
    run = api.get(f"/api/v1/runs/{body['run_id']}").json()
    assert run["trigger_data"] == {"x": [1, 2]}


def test_webhook_with_a_body_that_is_not_json_is_400(api: httpx.Client) -> None:
    """A webhook body that is not JSON is refused before any run starts."""
    health_pipeline(api, "badjson")

    response = api.post(
        "/api/v1/runs/trigger/service_health_pipeline_badjson",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    assert "not JSON" in response.json()["detail"]


def test_list_runs_filters_by_workflow_and_status_and_pages(api: httpx.Client) -> None:
    """GET /runs filters by workflow_id and status, newest first, page by page."""
    workflow_id = health_pipeline(api, "list")
    run_ids = [
        api.post(f"/api/v1/runs/{workflow_id}/execute", json={"data": {}}).json()["id"]
        for _ in range(3)
    ]

    everything = api.get("/api/v1/runs", params={"workflow_id": workflow_id}).json()
    first = api.get("/api/v1/runs", params={"workflow_id": workflow_id, "page_size": 2}).json()
    second = api.get(
        "/api/v1/runs", params={"workflow_id": workflow_id, "page_size": 2, "page": 2}
    ).json()
    failed = api.get("/api/v1/runs", params={"workflow_id": workflow_id, "status": "failed"})

    assert [r["id"] for r in everything] == run_ids[::-1]
    assert [r["id"] for r in first + second] == run_ids[::-1]
    assert failed.json() == []
    assert api.get("/api/v1/runs", params={"page_size": 1000}).status_code == 422
    bogus = api.get("/api/v1/runs", params={"status": "finished"})
    assert bogus.status_code == 422, bogus.text
    (problem,) = bogus.json()["detail"]
    assert problem["loc"] == ["query", "status"] and "'cancelled'" in problem["msg"], problem


def test_openapi_document_is_served(api: httpx.Client) -> None:
    """The API's OpenAPI document lists its routes."""
    document = api.get("/openapi.json").json()

    assert "/api/v1/runs/{workflow_id}/execute-async" in document["paths"]
    assert "/api/v1/workflows" in document["paths"]


BOMB = "\n".join(
    [f"l0: &l0 [{', '.join(['x'] * 9)}]"]
    + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
)
NASTY_DOCUMENTS = {
    "alias bomb": (BOMB, "20000 values"),
    "deep nesting": ("steps: " + "[" * 200 + "]" * 200, "64 levels"),
    "huge document": ("name: x\ndescription: " + "a" * 300_000, "256 KiB"),
    "control characters": ("name: \x00\x01\x02", "invalid YAML"),
    "not a mapping": ("- just\n- a list", "mapping"),
    "empty": ("", "mapping"),
    "two documents": ("name: a\n---\nname: b\n", "invalid YAML"),
}


def test_nasty_documents_are_refused_with_a_limit_or_reason(api: httpx.Client) -> None:
    """Alias bombs, deep nesting, huge or binary documents get a 422 that says why."""
    for label, (text, reason) in NASTY_DOCUMENTS.items():
        response = api.post("/api/v1/workflows", json={"yaml_content": text})

        assert response.status_code == 422, label
        assert reason in response.text, (label, response.text)


def test_body_that_is_not_json_is_a_4xx(api: httpx.Client) -> None:
    """Bytes that are not JSON (or not UTF-8) as a registration body are a client error."""
    for raw in (b"\xff\xfe\x00garbage", b"{", b"[]", b'{"yaml_content": 5}'):
        response = api.post(
            "/api/v1/workflows", content=raw, headers={"content-type": "application/json"}
        )

        assert 400 <= response.status_code < 500, (raw, response.status_code)
