"""The llm node through the real anthropic SDK, talking to a local Messages API stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stepstream.errors import StepError
from stepstream.nodes import llm
from tests.support.servers import FakeMessagesApi
from tests.unit.conftest import StepContextFactory

LEAD = {"body": {"name": "Ann", "company": "Acme", "tags": ["vip"]}}


def llm_step(prompt: str, **keys: object) -> dict[str, object]:
    """An llm step's config."""
    return {"id": "ask", "type": "llm", "prompt": prompt, **keys}


def run(step_context: StepContextFactory, config: dict[str, Any]) -> dict[str, Any]:
    """Run the llm node for ``config`` with the LEAD trigger."""
    return llm.run(step_context(config, {"trigger": LEAD}))


def test_llm_reply_gives_content_model_stop_reason_and_usage(
    messages_api: FakeMessagesApi, step_context: StepContextFactory
) -> None:
    messages_api.default_reply = "A short summary."

    output = run(step_context, llm_step("Summarise this", model="claude-test-1"))

    assert output == {
        "content": "A short summary.",
        "parsed": None,
        "model": "claude-test-1",
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 2, "output_tokens": 3},
    }


def test_llm_request_carries_rendered_prompt_and_defaults(
    messages_api: FakeMessagesApi, step_context: StepContextFactory
) -> None:
    run(step_context, llm_step("Qualify {trigger.body.name} ({trigger.body.tags})"))

    [request] = messages_api.requests
    sent = request.json()
    assert sent == {
        "model": llm.DEFAULT_MODEL,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": 'Qualify Ann (["vip"])'}],
    }
    assert "anthropic-version" in request.headers


def test_llm_system_temperature_and_max_tokens_passed_on(
    messages_api: FakeMessagesApi, step_context: StepContextFactory
) -> None:
    config = llm_step(
        "Hi", system="You work for {trigger.body.company}", temperature="0.2", max_tokens=50
    )

    run(step_context, config)

    sent = messages_api.requests[0].json()
    assert sent["system"] == "You work for Acme"
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 50


def test_llm_reply_chosen_by_prompt_substring(
    messages_api: FakeMessagesApi, step_context: StepContextFactory
) -> None:
    messages_api.reply_when("Acme", '{"score": 8}')
    messages_api.reply_when("Ann", '{"score": 2}')

    output = run(step_context, llm_step("Lead: {trigger.body}"))

    assert output["parsed"] == {"score": 8}
    assert "Acme" in messages_api.prompts[0]


@pytest.mark.parametrize(
    "reply",
    [
        '{"score": 8, "summary": "Good fit"}',
        '```json\n{"score": 8, "summary": "Good fit"}\n```',
        '  ```\n{"score": 8, "summary": "Good fit"}\n```  \n',
    ],
)
def test_llm_json_reply_bare_or_fenced_is_parsed(
    reply: str, messages_api: FakeMessagesApi, step_context: StepContextFactory
) -> None:
    messages_api.default_reply = reply

    output = run(step_context, llm_step("Score it"))

    assert output["parsed"] == {"score": 8, "summary": "Good fit"}
    assert output["content"] == reply


@pytest.mark.parametrize(
    ("content", "parsed"),
    [
        ("[1, 2]", [1, 2]),
        ("7", 7),
        ("```json\n[true, null]\n```", [True, None]),
        ('Sure! Here it is: {"a": 1}', None),
        ("```json\n{broken\n```", None),
        ("", None),
    ],
)
def test_parse_json_reads_json_or_gives_none(content: str, parsed: object) -> None:
    assert llm.parse_json(content) == parsed


def test_llm_api_error_becomes_step_failure(
    messages_api: FakeMessagesApi, step_context: StepContextFactory
) -> None:
    messages_api.fail_next(529, "overloaded_error", "Overloaded")

    with pytest.raises(StepError, match="Messages API call failed") as caught:
        run(step_context, llm_step("Hi"))

    assert caught.value.field == "prompt"
    assert "overloaded_error" in str(caught.value)
    assert len(messages_api.requests) == 1


def test_llm_invalid_max_tokens_refused_by_api_fails_step(
    messages_api: FakeMessagesApi, step_context: StepContextFactory
) -> None:
    with pytest.raises(StepError, match="invalid_request_error"):
        run(step_context, llm_step("Hi", max_tokens=0))


def test_llm_wrong_api_key_fails_step_with_authentication_error(
    messages_api: FakeMessagesApi,
    step_context: StepContextFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-wrong")

    with pytest.raises(StepError, match="authentication_error"):
        run(step_context, llm_step("Hi"))


def test_llm_unreachable_api_fails_step(
    messages_api: FakeMessagesApi,
    step_context: StepContextFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeMessagesApi() as gone:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", gone.base_url)

    with pytest.raises(StepError, match="Messages API unreachable") as caught:
        run(step_context, llm_step("Hi"))

    assert caught.value.kind == "network"


def test_llm_client_reused_across_steps(
    messages_api: FakeMessagesApi, step_context: StepContextFactory
) -> None:
    run(step_context, llm_step("one"))
    first = llm._client

    run(step_context, llm_step("two"))

    assert first is not None
    assert llm._client is first
    assert messages_api.prompts == ["one", "two"]


def test_llm_streamed_reply_reports_coalesced_text_and_returns_the_whole_answer(
    messages_api: FakeMessagesApi, step_context: StepContextFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stream: true speaks the streaming protocol; progress parts add up to the content."""
    messages_api.default_reply = " ".join(f"w{n}" for n in range(40))
    monkeypatch.setattr(llm, "PROGRESS_CHARS", 20)
    monkeypatch.setattr(llm, "PROGRESS_SECONDS", 60.0)  # sizes alone decide here
    parts: list[dict[str, Any]] = []
    ctx = step_context(llm_step("Tell", stream=True), {"trigger": LEAD})
    ctx = type(ctx)(ctx.step, ctx.scope, ctx.known, ctx.run_id, parts.append)

    output = llm.run(ctx)

    assert output["content"] == messages_api.default_reply
    assert "".join(part["text"] for part in parts) == output["content"]
    assert 1 < len(parts) < 40
    assert all(len(part["text"]) >= 20 for part in parts[:-1])
    assert output["stop_reason"] == "end_turn" and output["usage"]["output_tokens"] == 40
    assert messages_api.requests[-1].json()["stream"] is True


def test_llm_stream_without_a_listener_asks_for_the_whole_answer(
    messages_api: FakeMessagesApi, step_context: StepContextFactory
) -> None:
    """With nobody to report to, the step makes an ordinary (non-streaming) call."""
    messages_api.default_reply = "whole"

    output = run(step_context, llm_step("Tell", stream=True))

    assert output["content"] == "whole"
    assert "stream" not in messages_api.requests[-1].json()


@pytest.mark.parametrize("key", [None, ""])
def test_llm_without_an_api_key_fails_step_as_config(
    key: str | None,
    messages_api: FakeMessagesApi,
    step_context: StepContextFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """No ANTHROPIC_API_KEY (or an empty one) is a setting to fix, not a bug in the node."""
    if key is None:
        monkeypatch.delenv("ANTHROPIC_API_KEY")
    else:
        monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    # Nor any other source the SDK would find credentials in.
    for name in ("ANTHROPIC_PROFILE", "ANTHROPIC_CONFIG_DIR", "ANTHROPIC_FEDERATION_RULE_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))

    with pytest.raises(StepError, match="ANTHROPIC_API_KEY") as caught:
        run(step_context, llm_step("Hi"))

    assert caught.value.kind == "config"
    assert messages_api.requests == []
    assert llm._client is None  # built again once the key is set
