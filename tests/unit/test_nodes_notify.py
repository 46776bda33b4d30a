"""The notify node: webhook really POSTs, log logs, email and slack say nothing was sent."""

from __future__ import annotations

import logging

import pytest
from stepstream.errors import StepError, TemplateError
from stepstream.nodes import notify

from tests.support.servers import MockHttpServer
from tests.unit.conftest import StepContextFactory

FETCH = {"body": {"items": [{"name": "Ann", "qty": 2}], "name": "Zoë"}}


def notify_step(channel: str, **keys: object) -> dict[str, object]:
    """A notify step's config."""
    return {"id": "tell", "type": "notify", "channel": channel, **keys}


def test_notify_log_channel_delivers_and_logs_message(
    step_context: StepContextFactory, caplog: pytest.LogCaptureFixture
) -> None:
    config = notify_step("log", message="Thanks {fetch.body.name}", recipient="ops")

    with caplog.at_level(logging.INFO, logger="stepstream.nodes.notify"):
        output = notify.run(step_context(config, {"fetch": FETCH}))

    assert output == {
        "channel": "log",
        "message": "Thanks Zoë",
        "recipient": "ops",
        "subject": "Workflow Notification",
        "sent": True,
        "delivered": True,
    }
    record = next(r for r in caplog.records if r.getMessage() == "notification")
    assert (record.channel, record.text) == ("log", "Thanks Zoë")


def test_notify_channel_defaults_to_log(step_context: StepContextFactory) -> None:
    output = notify.run(step_context({"id": "tell", "type": "notify", "message": "hi"}))

    assert (output["channel"], output["delivered"]) == ("log", True)


@pytest.mark.parametrize("channel", ["email", "slack"])
def test_notify_unwired_channel_reports_not_delivered_with_note(
    channel: str, step_context: StepContextFactory
) -> None:
    config = notify_step(channel, message="Got {fetch.body.items}", recipient="#orders")

    output = notify.run(step_context(config, {"fetch": FETCH}))

    assert output["sent"] is False
    assert output["delivered"] is False
    assert f"no {channel} provider" in output["note"]
    assert output["message"] == 'Got [{"name": "Ann", "qty": 2}]'


def test_notify_webhook_posts_payload_with_run_and_step_ids(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("POST", "/hook", status=202)
    config = notify_step(
        "webhook", url=mock_http.url("/hook"), message="Hi {fetch.body.name}", subject="S"
    )

    output = notify.run(step_context(config, {"fetch": FETCH}, run_id="run-42"))

    [request] = mock_http.requests_to("/hook")
    assert request.method == "POST"
    assert request.json() == {
        "channel": "webhook",
        "message": "Hi Zoë",
        "recipient": "",
        "subject": "S",
        "run_id": "run-42",
        "step_id": "tell",
    }
    assert output["url"] == mock_http.url("/hook")
    assert output["status_code"] == 202
    assert (output["sent"], output["delivered"]) == (True, True)


def test_notify_webhook_without_url_posts_to_recipient(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("POST", "/to-recipient")

    output = notify.run(
        step_context(notify_step("webhook", recipient=mock_http.url("/to-recipient")))
    )

    assert len(mock_http.requests_to("/to-recipient")) == 1
    assert output["delivered"] is True


def test_notify_webhook_error_status_fails_step(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    mock_http.route("POST", "/hook", status=500, json={"error": "boom"})

    with pytest.raises(StepError, match="answered 500") as caught:
        notify.run(step_context(notify_step("webhook", url=mock_http.url("/hook"))))

    assert caught.value.field == "url"


@pytest.mark.parametrize("url", ["", "#ops", "file:///etc/passwd"])
def test_notify_webhook_non_http_url_fails_step(url: str, step_context: StepContextFactory) -> None:
    with pytest.raises(StepError, match="webhook needs an http"):
        notify.run(step_context(notify_step("webhook", url=url)))


def test_notify_webhook_unreachable_fails_step(step_context: StepContextFactory) -> None:
    with MockHttpServer() as gone:
        url = gone.url("/hook")

    with pytest.raises(StepError, match=f"POST {url} failed") as caught:
        notify.run(step_context(notify_step("webhook", url=url)))

    assert caught.value.field == "url"


def test_notify_unknown_channel_fails_step_naming_known_ones(
    step_context: StepContextFactory,
) -> None:
    with pytest.raises(StepError, match="unknown channel 'sms'") as caught:
        notify.run(step_context(notify_step("sms", message="x")))

    assert caught.value.field == "channel"
    assert "webhook" in str(caught.value)


def test_notify_unresolvable_reference_fails_before_sending(
    mock_http: MockHttpServer, step_context: StepContextFactory
) -> None:
    config = notify_step("webhook", url=mock_http.url("/hook"), message="New {fetch.body.nmae}")

    with pytest.raises(TemplateError) as caught:
        notify.run(step_context(config, {"fetch": FETCH}))

    assert (caught.value.reference, caught.value.field) == ("fetch.body.nmae", "message")
    assert mock_http.requests == []
