"""``llm``: one Anthropic Messages API call with a templated prompt.

The anthropic SDK costs over a second of import, so it is imported the first time
an llm step runs, never at module load. The SDK reads ``ANTHROPIC_API_KEY`` and
``ANTHROPIC_BASE_URL`` itself; tests point the latter at a local stand-in.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from stepstream.errors import StepError
from stepstream.nodes._context import StepContext

if TYPE_CHECKING:
    import anthropic

DEFAULT_MODEL = "claude-sonnet-4-6"
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n\s*```\s*$", re.DOTALL)
_client: anthropic.Anthropic | None = None


def _anthropic() -> anthropic.Anthropic:
    global _client
    if _client is None:
        import anthropic

        # Retries of transient failures belong to the step's policy, not hidden here.
        _client = anthropic.Anthropic(max_retries=0)
    return _client


def parse_json(content: str) -> Any:
    """The JSON a model answered with, fenced in ```json or bare; None if it is not JSON."""
    fenced = _FENCE.match(content)
    try:
        return json.loads(fenced.group(1) if fenced else content)
    except ValueError:
        return None


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
    try:
        message = _anthropic().messages.create(**request)
    except anthropic.APIError as exc:
        raise StepError(f"Messages API call failed: {exc}", field="prompt") from exc
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
