"""``llm``: one Anthropic Messages API call with a templated prompt.

The anthropic SDK costs over a second of import, so it is imported the first time an llm
step runs, never at module load. With ``stream: true`` the step uses the API's streaming
protocol and reports the text as it arrives (coalesced) through the step's progress
callback; the step's output is the same either way. The SDK reads ``ANTHROPIC_API_KEY``
and ``ANTHROPIC_BASE_URL`` itself; tests point the latter at a local stand-in.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stepstream.errors import StepError
from stepstream.nodes._context import StepContext

if TYPE_CHECKING:
    import anthropic

DEFAULT_MODEL = "claude-sonnet-4-6"
# With ``stream: true``, text deltas are passed on at most this often, or when this
# much text has gathered, so a long answer makes tens of events, not thousands.
PROGRESS_SECONDS = 0.1
PROGRESS_CHARS = 400
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)
_client: anthropic.Anthropic | None = None


def _anthropic() -> anthropic.Anthropic:
    """The process-wide SDK client, built on first use from the environment.

    Raises:
        StepError: The SDK found no credentials (kind ``config``). Left to the SDK,
            that is a TypeError when the request is sent, which reads as a bug.
    """
    global _client
    if _client is None:
        import anthropic

        # Retries of transient failures belong to the step's policy, not hidden here.
        built = anthropic.Anthropic(max_retries=0)
        # ANTHROPIC_API_KEY is what the template sets; the SDK also takes a token or a
        # profile, so the check is of what it found, not of that one variable.
        if built.api_key is None and built.auth_token is None and built.credentials is None:
            built.close()
            raise StepError("no key for the Messages API: ANTHROPIC_API_KEY is missing or "
                            "empty in the function's environment", kind="config")
        _client = built
    return _client


def parse_json(content: str) -> Any:
    """The JSON a model answered with, fenced in ```json or bare; None if it is not JSON."""
    fenced = _FENCE.match(content)
    try:
        return json.loads(fenced.group(1) if fenced else content)
    except ValueError:
        return None


class _Coalescer:
    """Gathers text deltas; hands them on every ``PROGRESS_SECONDS`` or ``PROGRESS_CHARS``."""

    def __init__(self, report: Callable[[dict[str, Any]], None]) -> None:
        self.report = report
        self.pending: list[str] = []
        self.size = 0
        self.since = time.monotonic()

    def add(self, text: str) -> None:
        self.pending.append(text)
        self.size += len(text)
        if self.size >= PROGRESS_CHARS or time.monotonic() - self.since >= PROGRESS_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.report({"text": "".join(self.pending)})
        self.pending, self.size, self.since = [], 0, time.monotonic()


def _streamed(
    request: dict[str, Any], report: Callable[[dict[str, Any]], None], ctx: StepContext
) -> Any:
    """Call the API in streaming mode, reporting the text as it comes, coalesced.

    The step's deadline is checked between deltas: the SDK's timeout bounds each
    wait, not the whole answer.
    """
    coalescer = _Coalescer(report)
    with _anthropic().messages.stream(**request) as stream:
        for text in stream.text_stream:
            coalescer.add(text)
            ctx.remaining()
        coalescer.flush()
        return stream.get_final_message()


def _failure(exc: Exception) -> StepError:
    """The step's error for an SDK exception, with the kind ``retry.on`` matches."""
    import anthropic

    if isinstance(exc, anthropic.APITimeoutError):
        return StepError(f"Messages API call timed out: {exc}", kind="timeout", field="timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return StepError(f"Messages API unreachable: {exc}", kind="network", field="prompt")
    status = getattr(exc, "status_code", None)
    return StepError(f"Messages API call failed: {exc}", kind="api", status_code=status,
                     field="prompt")


def run(ctx: StepContext) -> dict[str, Any]:
    """Ask the model; ``content`` is its text and ``parsed`` that text read as JSON."""
    import anthropic

    request: dict[str, Any] = {
        "model": str(ctx.get("model", DEFAULT_MODEL)),
        "max_tokens": int(ctx.get("max_tokens", 1024)),
        "messages": [{"role": "user", "content": ctx.text("prompt")}],
    }
    if ctx.step.config.get("system"):
        request["system"] = ctx.text("system")
    if ctx.step.config.get("temperature") is not None:
        # anthropic 2.x's create() has no ``temperature`` argument (passing it is a
        # TypeError); the body carries it and the API accepts or refuses it.
        request["extra_body"] = {"temperature": float(ctx.get("temperature"))}
    left = ctx.remaining()
    if left is not None:
        request["timeout"] = left
    try:
        if ctx.step.config.get("stream") and ctx.progress is not None:
            message = _streamed(request, ctx.progress, ctx)
        else:
            message = _anthropic().messages.create(**request)
    except anthropic.APIError as exc:
        raise _failure(exc) from exc
    content = "".join(block.text for block in message.content if block.type == "text")
    return {
        "content": content,
        "parsed": parse_json(content),
        "model": message.model,
        "stop_reason": message.stop_reason,
        "usage": {
            "input_tokens": message.usage.input_tokens,
            "output_tokens": message.usage.output_tokens,
        },
    }
