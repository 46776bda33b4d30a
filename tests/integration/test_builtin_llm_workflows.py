"""The three built-in LLM workflows, run on the local stack against the Messages API stand-in.

The real anthropic SDK makes the calls; ANTHROPIC_BASE_URL points it at 127.0.0.1.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import WORKFLOWS
from tests.integration.conftest import register, sse_events, unique
from tests.support.servers import FakeMessagesApi, MockHttpServer


def _builtin(api: httpx.Client, name: str, suffix: str) -> str:
    return register(api, unique((WORKFLOWS / f"{name}.yaml").read_text(), name, suffix))


def _queued_run(api: httpx.Client, workflow_id: str, data: dict) -> dict:
    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": data}).json()["id"]
    events = sse_events(api, run_id)
    assert events[-1]["type"] == "run_completed", events[-1]
    return api.get(f"/api/v1/runs/{run_id}").json()


def _statuses(run: dict) -> dict[str, str]:
    return {step["step_id"]: step["status"] for step in run["steps"]}


def test_lead_qualification_routes_a_high_score_to_sales(
    api: httpx.Client, messages_api: FakeMessagesApi
) -> None:
    """A lead the model scores 9 goes to the sales Slack channel; nurture is skipped."""
    answer = {"score": 9, "summary": "Acme, 500 seats, budget approved",
              "company_size": "large", "budget_fit": "yes", "urgency": "high"}
    messages_api.reply_when("lead-hot@acme.test", "```json\n" + json.dumps(answer) + "\n```")
    workflow_id = _builtin(api, "lead_qualification", "hot")

    run = _queued_run(api, workflow_id, {"email": "lead-hot@acme.test", "company": "Acme"})

    assert _statuses(run) == {"qualify": "completed", "check_qualified": "completed",
                              "notify_sales": "completed", "send_nurture": "skipped"}
    sales = next(s for s in run["steps"] if s["step_id"] == "notify_sales")["output_data"]
    assert sales["message"] == "Qualified lead (score 9): Acme, 500 seats, budget approved"
    assert sales["delivered"] is False and "slack" in sales["note"]
    assert any("lead-hot@acme.test" in prompt for prompt in messages_api.prompts)


def test_lead_qualification_sends_a_low_score_to_nurture(
    api: httpx.Client, messages_api: FakeMessagesApi
) -> None:
    """A lead the model scores 3 gets the nurture email; sales is skipped."""
    messages_api.reply_when("lead-cold@tiny.test", json.dumps({"score": 3, "summary": "tiny"}))
    workflow_id = _builtin(api, "lead_qualification", "cold")

    run = _queued_run(api, workflow_id, {"email": "lead-cold@tiny.test"})

    assert _statuses(run)["notify_sales"] == "skipped"
    nurture = next(s for s in run["steps"] if s["step_id"] == "send_nurture")["output_data"]
    assert nurture["recipient"] == "lead-cold@tiny.test"


def test_support_triage_escalates_a_critical_ticket(
    api: httpx.Client, messages_api: FakeMessagesApi
) -> None:
    """Priority 1 escalates to Slack with the model's summary in the message."""
    answer = {"sentiment": "negative", "priority": 1, "category": "billing",
              "summary": "Charged twice", "suggested_response": "We are refunding you."}
    messages_api.reply_when("double charge #4411", json.dumps(answer))
    workflow_id = _builtin(api, "support_triage", "urgent")

    run = _queued_run(api, workflow_id, {"subject": "double charge #4411",
                                         "from": "pat@example.com", "message": "Twice!"})

    assert _statuses(run)["escalate"] == "completed"
    assert _statuses(run)["route_normal"] == "skipped"
    escalated = next(s for s in run["steps"] if s["step_id"] == "escalate")["output_data"]
    assert "Urgent billing ticket: Charged twice" in escalated["message"]


def test_document_summary_fetches_summarises_and_reports(
    api: httpx.Client, messages_api: FakeMessagesApi
) -> None:
    """The fetched page reaches the prompt; the model's text becomes the email."""
    messages_api.reply_when("Quarterly numbers went up", "Summary: revenue grew.")
    workflow_id = _builtin(api, "document_summary", "doc")
    with MockHttpServer() as site:
        site.route("GET", "/report", body="Quarterly numbers went up by 12%.",
                   headers={"content-type": "text/plain"})

        run = _queued_run(api, workflow_id, {"document_url": site.url("/report"),
                                             "email": "boss@example.com"})

    summary = next(s for s in run["steps"] if s["step_id"] == "summarize")["output_data"]
    report = next(s for s in run["steps"] if s["step_id"] == "send_report")["output_data"]
    assert summary["content"] == "Summary: revenue grew."
    assert summary["usage"]["output_tokens"] == 3
    assert (report["recipient"], report["message"]) == ("boss@example.com", "Summary: revenue grew.")


def test_streamed_llm_step_sends_coalesced_progress_then_the_whole_answer(
    api: httpx.Client, messages_api: FakeMessagesApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stream: true sends the text as it is written, in a few coalesced step_progress events."""
    words = [f"word{n}" for n in range(30)]
    messages_api.reply_when("tell me a long story", " ".join(words))
    monkeypatch.setattr(messages_api, "stream_delay", 0.02)
    workflow_id = register(api, (
        "name: streamed_story\nsteps:\n  - id: tell\n    type: llm\n    stream: true\n"
        "    prompt: tell me a long story\n"
    ))

    run_id = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()["id"]
    events = sse_events(api, run_id)

    progress = [e for e in events if e["type"] == "step_progress"]
    completed = next(e for e in events if e["type"] == "step_completed")
    assert "".join(e["text"] for e in progress) == " ".join(words)
    assert completed["output"]["content"] == " ".join(words)
    assert 1 < len(progress) < len(words)
    assert all(e["step_id"] == "tell" and e["iteration"] == 1 for e in progress)
    kinds = [e["type"] for e in events]
    assert kinds.index("step_started") < kinds.index("step_progress") < kinds.index("step_completed")
