"""Clients and a store for the local stack the integration tests share (tests/conftest.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from stepstream import Settings
from stepstream.store import Store
from stepstream_local.stack import LocalStack
from tests.conftest import WORKFLOWS


def register(api: httpx.Client, yaml_content: str) -> str:
    """Register a workflow; return its id."""
    response = api.post("/api/v1/workflows", json={"yaml_content": yaml_content})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def unique(yaml_content: str, name: str, suffix: str) -> str:
    """A copy of a workflow with its name and trigger path made unique by ``suffix``."""
    return yaml_content.replace(name, f"{name}_{suffix}")


def health_pipeline(api: httpx.Client, suffix: str) -> str:
    """The built-in health pipeline, pointed at this stack's /health, registered."""
    text = (WORKFLOWS / "service_health_pipeline.yaml").read_text()
    text = text.replace("http://localhost:8000", str(api.base_url).rstrip("/"))
    return register(api, unique(text, "service_health_pipeline", suffix))


def stream_url(api: httpx.Client, run_id: str) -> str:
    """The run's signed stream URL, as the API hands it out."""
    return api.get(f"/api/v1/runs/{run_id}").json()["stream_url"]


def sse_events(api: httpx.Client, run_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every event of a run read off its SSE stream, with the SSE id and event name."""
    events = []
    url = httpx.URL(stream_url(api, run_id))
    headers = params.pop("headers", {})
    params = {**dict(url.params), **params}
    with connect_sse(api, "GET", url, params=params, headers=headers) as source:
        assert source.response.status_code == 200
        for sse in source.iter_sse():
            data = json.loads(sse.data)
            events.append({"sse_id": sse.id, "sse_event": sse.event, **data})
    return events


@pytest.fixture
def store(stack: LocalStack) -> Store:
    """A store on the stack's tables, to write runs and events as the engine would."""
    settings = Settings.from_env()
    return Store(settings.workflows_table, settings.runs_table, settings.events_table)
