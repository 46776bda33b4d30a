"""Cases from ../shared/cases that issues name, run as their reports describe them.

The cases' mock service listens on 127.0.0.1:8765, a fixed port, so every test here
runs on one xdist worker (group ``port_8765``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import CASES
from tests.integration.conftest import register, sse_events
from tests.support.servers import MockHttpServer

pytestmark = pytest.mark.xdist_group("port_8765")

QUOTE_BODY = b'{"price": 30.40, "ratio": 0.1, "tiny": 1e-7, "order_id": 12345678901234567890}'


@pytest.fixture(scope="module")
def case_mock() -> Iterator[MockHttpServer]:
    """The cases' stand-in for the outside world, on 127.0.0.1:8765."""
    with MockHttpServer(port=8765) as mock:
        mock.route("GET", "/quote", body=QUOTE_BODY, headers={"content-type": "application/json"})
        yield mock


def _assert_c01_values(run: dict) -> None:
    assert run["status"] == "completed"
    assert run["trigger_data"] == {"amount": 19.99, "rate": 0.075}
    steps = {step["step_id"]: step for step in run["steps"]}
    quote = steps["quote"]["output_data"]["body"]
    assert quote == {"price": 30.4, "ratio": 0.1, "tiny": 1e-7, "order_id": 12345678901234567890}
    assert isinstance(quote["order_id"], int)
    message = steps["tell"]["output_data"]["message"]
    assert message == "price=30.4 ratio=0.1 order=12345678901234567890 paid=19.99"


def _comparable(run: dict) -> list[dict]:
    steps = []
    for step in run["steps"]:
        step = {k: v for k, v in step.items() if k not in ("started_at", "completed_at")}
        step["output_data"] = {k: v for k, v in step["output_data"].items() if k != "headers"}
        steps.append(step)
    return steps


def test_c01_numbers_round_trip_through_dynamodb_on_every_path(
    api: httpx.Client, case_mock: MockHttpServer
) -> None:
    """C01: fractional and big numbers survive storage on the webhook and the queued path."""
    workflow_id = register(api, (CASES / "C01.yaml").read_text())
    data = {"amount": 19.99, "rate": 0.075}

    hooked = api.post("/api/v1/runs/trigger/c01_fractional_numbers", json=data)
    queued = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": data})
    events = sse_events(api, queued.json()["id"])
    webhook_run = api.get(f"/api/v1/runs/{hooked.json()['run_id']}")
    queued_run = api.get(f"/api/v1/runs/{queued.json()['id']}")

    assert hooked.status_code == 200 and queued.status_code == 202
    _assert_c01_values(webhook_run.json())
    _assert_c01_values(queued_run.json())
    assert "Decimal" not in webhook_run.text + queued_run.text
    assert "30.399999" not in webhook_run.text + queued_run.text
    quote_event = next(e for e in events if e["type"] == "step_completed" and e["step_id"] == "quote")
    assert quote_event["output"]["body"]["order_id"] == 12345678901234567890
    assert quote_event["output"]["body"]["price"] == 30.4
    # Headers differ by nature (request headers, Date); every value must be identical.
    assert _comparable(webhook_run.json()) == _comparable(queued_run.json())
    assert json.loads(queued_run.text)["trigger_data"]["amount"] == 19.99
