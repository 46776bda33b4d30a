"""The Idempotency-Key header on execute, execute-async and webhooks, on the local stack."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from stepstream import Settings, request_keys
from stepstream.store import Store
from stepstream_local.stack import LocalStack
from tests.integration.conftest import register

REPLAYED = "Idempotent-Replayed"

WORKFLOW = """\
name: {name}
trigger:
  type: webhook
steps:
  - id: receive
    type: trigger
  - id: note
    type: notify
    channel: log
    message: "got {{trigger.body.n ?? 0}}"
"""


def _workflow(api: httpx.Client) -> tuple[str, str]:
    """A fresh two-step workflow; returns its id and its webhook route."""
    name = f"idem_{uuid.uuid4().hex[:12]}"
    return register(api, WORKFLOW.format(name=name)), f"/api/v1/runs/trigger/{name}"


def _queue(api: httpx.Client, workflow_id: str, key: str | None, data: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": data},
                    headers=headers)


def _runs_of(api: httpx.Client, workflow_id: str) -> list[str]:
    response = api.get("/api/v1/runs", params={"workflow_id": workflow_id, "page_size": 100})
    assert response.status_code == 200, response.text
    return [run["id"] for run in response.json()]


@pytest.fixture
def store(stack: LocalStack) -> Store:
    """The stack's store, for reading and planting key items beside the API."""
    settings = Settings.from_env()
    return Store(settings.workflows_table, settings.runs_table, settings.events_table)


def _key_item(store: Store, workflow_id: str, key: str) -> dict[str, Any] | None:
    item_id = request_keys.key_item_id(workflow_id, key)
    answer = store.client.get_item(TableName=store.runs_table, Key={"run_id": {"S": item_id}})
    return answer.get("Item")


def _plant(store: Store, workflow_id: str, key: str, data: Any, **numbers: int) -> str:
    """Write a key item by hand, as a request that died would leave it; returns its run id."""
    target = str(uuid.uuid4())
    item = {"run_id": {"S": request_keys.key_item_id(workflow_id, key)},
            "target_run_id": {"S": target},
            "fingerprint": {"S": request_keys.fingerprint(data, "execute-async")}}
    item.update({name: {"N": str(value)} for name, value in numbers.items()})
    store.client.put_item(TableName=store.runs_table, Item=item)
    return target


def test_execute_async_same_key_twice_returns_the_first_run_replayed(
    api: httpx.Client, store: Store
) -> None:
    """Given a queued run started with a key, a repeat returns that run, marked replayed."""
    workflow_id, _ = _workflow(api)

    first = _queue(api, workflow_id, "order-1", {"n": 1})
    second = _queue(api, workflow_id, "order-1", {"n": 1})

    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json()["id"] == first.json()["id"]
    assert REPLAYED not in first.headers
    assert second.headers[REPLAYED] == "true"
    assert second.json()["stream_url"]
    assert _runs_of(api, workflow_id) == [first.json()["id"]]
    item = _key_item(store, workflow_id, "order-1")
    assert item is not None and item["target_run_id"]["S"] == first.json()["id"]
    expires_in = int(item["expires_at"]["N"]) - time.time()
    assert 24 * 3600 - 60 < expires_in <= 24 * 3600


def test_same_key_with_keys_in_another_order_is_the_same_request(api: httpx.Client) -> None:
    """The input is compared as canonical JSON: key order does not make a new request."""
    workflow_id, _ = _workflow(api)

    first = _queue(api, workflow_id, "order-2", {"a": 1, "b": [1, 2]})
    second = _queue(api, workflow_id, "order-2", {"b": [1, 2], "a": 1})

    assert second.headers.get(REPLAYED) == "true"
    assert second.json()["id"] == first.json()["id"]


def test_same_key_with_another_body_is_422_and_starts_nothing(api: httpx.Client) -> None:
    """A key reused with different data is refused, naming the reuse."""
    workflow_id, _ = _workflow(api)
    first = _queue(api, workflow_id, "order-3", {"n": 1})

    other = _queue(api, workflow_id, "order-3", {"n": 2})

    assert other.status_code == 422
    assert "already used with a different request" in other.json()["detail"]
    assert _runs_of(api, workflow_id) == [first.json()["id"]]


def test_same_key_on_another_route_is_422_and_starts_nothing(api: httpx.Client) -> None:
    """A queued run's key sent to the sync route (or a webhook's) is not a repeat of it:
    its replay would answer as the other route did."""
    workflow_id, hook = _workflow(api)
    first = _queue(api, workflow_id, "routed", {"n": 1})

    sync = api.post(f"/api/v1/runs/{workflow_id}/execute", json={"data": {"n": 1}},
                    headers={"Idempotency-Key": "routed"})
    hooked = api.post(hook, json={"n": 1}, headers={"Idempotency-Key": "routed"})

    assert (sync.status_code, hooked.status_code) == (422, 422), sync.text
    assert "already used with a different request" in sync.json()["detail"]
    assert _runs_of(api, workflow_id) == [first.json()["id"]]


def test_same_key_on_two_workflows_starts_two_runs(api: httpx.Client) -> None:
    """A key is scoped to its workflow: another workflow's run is not a repeat."""
    one, _ = _workflow(api)
    two, _ = _workflow(api)

    first = _queue(api, one, "shared-key", {"n": 1})
    second = _queue(api, two, "shared-key", {"n": 1})

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]
    assert REPLAYED not in second.headers
    assert second.json()["workflow_id"] == two


def test_without_the_header_every_request_starts_a_run(api: httpx.Client) -> None:
    """No Idempotency-Key: two identical requests are two runs, as before."""
    workflow_id, _ = _workflow(api)

    first = _queue(api, workflow_id, None, {"n": 1})
    second = _queue(api, workflow_id, None, {"n": 1})

    assert first.json()["id"] != second.json()["id"]
    assert REPLAYED not in second.headers
    assert sorted(_runs_of(api, workflow_id)) == sorted([first.json()["id"], second.json()["id"]])


def test_webhook_same_key_runs_once_and_replays_with_200(api: httpx.Client) -> None:
    """A webhook delivered twice with one key runs once; the repeat gets the finished run."""
    workflow_id, hook = _workflow(api)
    headers = {"Idempotency-Key": "delivery-77"}

    first = api.post(hook, json={"n": 7}, headers=headers)
    second = api.post(hook, json={"n": 7}, headers=headers)
    other = api.post(hook, json={"n": 8}, headers=headers)

    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["status"] == "completed"
    assert second.json()["run_id"] == first.json()["run_id"]
    assert second.json()["workflow_id"] == workflow_id
    assert second.headers[REPLAYED] == "true" and REPLAYED not in first.headers
    assert other.status_code == 422
    assert _runs_of(api, workflow_id) == [first.json()["run_id"]]


def test_concurrent_requests_with_one_key_start_exactly_one_run(
    api: httpx.Client, stack: LocalStack
) -> None:
    """Given 8 requests with one key at the same moment, one run starts and all get it."""
    workflow_id, _ = _workflow(api)
    barrier = threading.Barrier(8)

    def send(_: int) -> httpx.Response:
        with httpx.Client(base_url=api.base_url, timeout=30) as client:
            barrier.wait()
            return _queue(client, workflow_id, "burst", {"n": 1})

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(send, range(8)))

    assert [r.status_code for r in responses] == [202] * 8, [r.text for r in responses]
    run_ids = {r.json()["id"] for r in responses}
    assert len(run_ids) == 1
    assert sum(REPLAYED not in r.headers for r in responses) == 1
    assert _runs_of(api, workflow_id) == list(run_ids)


def test_expired_key_starts_a_new_run(api: httpx.Client, store: Store) -> None:
    """Past its expires_at (TTL may not have deleted it yet) a key starts a new run."""
    workflow_id, _ = _workflow(api)
    first = _queue(api, workflow_id, "old-key", {"n": 1})
    store.client.update_item(
        TableName=store.runs_table,
        Key={"run_id": {"S": request_keys.key_item_id(workflow_id, "old-key")}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )

    again = _queue(api, workflow_id, "old-key", {"n": 1})

    assert again.status_code == 202
    assert again.json()["id"] != first.json()["id"]
    assert REPLAYED not in again.headers
    assert len(_runs_of(api, workflow_id)) == 2


def test_stale_reservation_of_a_run_never_created_is_taken_over(
    api: httpx.Client, store: Store
) -> None:
    """Given a key left pointing at a run that never came, a retry creates the run."""
    workflow_id, _ = _workflow(api)
    now = int(time.time())
    stale = _plant(store, workflow_id, "crashed", {"n": 1},
                   reserved_until=now - 1, expires_at=now + 3600)

    retry = _queue(api, workflow_id, "crashed", {"n": 1})
    repeat = _queue(api, workflow_id, "crashed", {"n": 1})

    assert retry.status_code == 202 and REPLAYED not in retry.headers
    run_id = retry.json()["id"]
    assert run_id != stale
    assert api.get(f"/api/v1/runs/{run_id}").status_code == 200
    item = _key_item(store, workflow_id, "crashed")
    assert item is not None and item["target_run_id"]["S"] == run_id
    assert repeat.json()["id"] == run_id and repeat.headers[REPLAYED] == "true"


def test_reservation_still_in_flight_is_409_after_the_wait(
    api: httpx.Client, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repeat whose first request is still creating the run waits, then is told to retry."""
    monkeypatch.setattr(request_keys, "WAIT_SECONDS", 0.2)
    workflow_id, _ = _workflow(api)
    now = int(time.time())
    _plant(store, workflow_id, "in-flight", {"n": 1},
           reserved_until=now + 60, expires_at=now + 3600)

    repeat = _queue(api, workflow_id, "in-flight", {"n": 1})
    other = _queue(api, workflow_id, "in-flight", {"n": 2})

    assert repeat.status_code == 409
    assert "retry" in repeat.json()["detail"]
    assert other.status_code == 422
    assert _runs_of(api, workflow_id) == []


def test_refused_request_frees_its_key_for_the_corrected_one(
    api: httpx.Client, store: Store
) -> None:
    """A request refused before its run exists (too large) leaves the key free."""
    workflow_id, _ = _workflow(api)

    refused = _queue(api, workflow_id, "fix-me", {"blob": "x" * 200_000})
    corrected = _queue(api, workflow_id, "fix-me", {"blob": "x"})

    assert refused.status_code == 413
    assert corrected.status_code == 202 and REPLAYED not in corrected.headers
    item = _key_item(store, workflow_id, "fix-me")
    assert item is not None and item["target_run_id"]["S"] == corrected.json()["id"]


def test_key_items_never_show_in_run_listings(api: httpx.Client, store: Store) -> None:
    """The key's item lives in the runs table but in neither listing."""
    workflow_id, _ = _workflow(api)
    run_id = _queue(api, workflow_id, "listed", {"n": 1}).json()["id"]

    listed = api.get("/api/v1/runs", params={"page_size": 100}).json()

    assert _key_item(store, workflow_id, "listed") is not None
    assert not [run for run in listed if run["id"].startswith("idem#")]
    assert run_id in [run["id"] for run in listed]
    assert _runs_of(api, workflow_id) == [run_id]


def test_execute_same_key_twice_runs_once_and_replays_the_finished_run(
    api: httpx.Client
) -> None:
    """A sync execute retried with its key (say after a client timeout) runs nothing more."""
    workflow_id, _ = _workflow(api)
    route = f"/api/v1/runs/{workflow_id}/execute"
    headers = {"Idempotency-Key": "sync-1"}

    first = api.post(route, json={"data": {"n": 5}}, headers=headers)
    second = api.post(route, json={"data": {"n": 5}}, headers=headers)
    other = api.post(route, json={"data": {"n": 6}}, headers=headers)

    assert (first.status_code, second.status_code, other.status_code) == (201, 201, 422)
    assert first.json()["status"] == second.json()["status"] == "completed"
    assert second.json()["id"] == first.json()["id"]
    assert second.headers[REPLAYED] == "true" and REPLAYED not in first.headers
    assert _runs_of(api, workflow_id) == [first.json()["id"]]


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_empty_or_too_long_key_is_400(api: httpx.Client, key: str) -> None:
    """Keys must be 1 to 255 characters; anything else is a client error, not a run."""
    workflow_id, hook = _workflow(api)

    queued = _queue(api, workflow_id, key, {"n": 1})
    hooked = api.post(hook, json={"n": 1}, headers={"Idempotency-Key": key})

    assert (queued.status_code, hooked.status_code) == (400, 400)
    assert "1 to 255 characters" in queued.json()["detail"]
    assert _runs_of(api, workflow_id) == []


def test_key_of_255_characters_is_accepted(api: httpx.Client) -> None:
    """The longest key allowed starts a run and replays it."""
    workflow_id, _ = _workflow(api)

    first = _queue(api, workflow_id, "k" * 255, {"n": 1})
    second = _queue(api, workflow_id, "k" * 255, {"n": 1})

    assert first.status_code == 202
    assert second.json()["id"] == first.json()["id"]


def test_openapi_document_describes_the_header_on_every_route_that_starts_a_run(
    api: httpx.Client
) -> None:
    """/openapi.json tells clients about Idempotency-Key where it applies, and only there."""
    paths = api.get("/openapi.json").json()["paths"]

    for path in ("/api/v1/runs/{workflow_id}/execute", "/api/v1/runs/{workflow_id}/execute-async",
                 "/api/v1/runs/trigger/{path}"):
        assert "Idempotency-Key" in paths[path]["post"]["description"]
    assert "Idempotency-Key" not in paths["/api/v1/runs/{run_id}/cancel"]["post"].get(
        "description", "")


def test_long_unknown_workflow_id_with_a_key_is_404_as_without_one(api: httpx.Client) -> None:
    """A 2 KB workflow id in the URL does not make the key's item too big to store."""
    workflow_id = "w" * 2048

    keyed = _queue(api, workflow_id, "k" * 255, {"n": 1})
    plain = _queue(api, workflow_id, None, {"n": 1})

    assert (keyed.status_code, plain.status_code) == (404, 404), keyed.text


def test_key_item_id_has_the_same_size_for_any_workflow_and_key(
    api: httpx.Client, store: Store
) -> None:
    """The longest key on a real workflow is stored under a short id, and replays."""
    workflow_id, _ = _workflow(api)

    first = _queue(api, workflow_id, "#" * 255, {"n": 1})
    second = _queue(api, workflow_id, "#" * 255, {"n": 1})

    assert first.status_code == 202
    assert second.json()["id"] == first.json()["id"] and second.headers[REPLAYED] == "true"
    item_id = request_keys.key_item_id(workflow_id, "#" * 255)
    assert len(item_id) == len(request_keys.key_item_id("w", "k")) < 100
    assert _key_item(store, workflow_id, "#" * 255) is not None


def _queue_raw(api: httpx.Client, workflow_id: str, key: bytes) -> httpx.Response:
    """Queue a run with ``key`` sent as these bytes (UTF-8 text, as a client sends it)."""
    return api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {"n": 1}},
                    headers={"Idempotency-Key": key})


def test_key_length_counts_characters_of_utf8_text_not_bytes(api: httpx.Client) -> None:
    """200 'é' (400 bytes) is a key of 200 characters: accepted, replayed; 256 'é' is not."""
    workflow_id, _ = _workflow(api)

    first = _queue_raw(api, workflow_id, ("é" * 200).encode())
    second = _queue_raw(api, workflow_id, ("é" * 200).encode())
    too_long = _queue_raw(api, workflow_id, ("é" * 256).encode())

    assert first.status_code == 202, first.text
    assert second.json()["id"] == first.json()["id"] and second.headers[REPLAYED] == "true"
    assert too_long.status_code == 400
    assert "1 to 255 characters; this one has 256" in too_long.json()["detail"]
