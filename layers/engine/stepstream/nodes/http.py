"""``http``: call a URL and hand its status, JSON (or text) body and headers on.

A response whose status the step accepts completes it: 1xx-3xx by default, or what
``accept_status`` lists (``any`` accepts every response, as the original service did).
Another status fails the step with kind ``http_status``; a request that gets no
response fails it with kind ``network`` or ``timeout``. Either way the step's
``retry`` and ``on_error`` decide what happens next, and a failed step's response is
still readable (``{step.status_code}``, ``{step.body}``) beside ``{step.error}``.
"""

from __future__ import annotations

from typing import Any

from stepstream import policy
from stepstream.errors import StepError
from stepstream.nodes._context import StepContext
from stepstream.nodes._http import send
from stepstream.templates import to_text


def _request_body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if isinstance(body, (dict, list)):
        return {"json": body}
    return {"content": to_text(body)}


def run(ctx: StepContext) -> dict[str, Any]:
    """Send the request the step describes."""
    url = ctx.url("url")
    method = str(ctx.get("method", "GET")).upper()
    headers = {str(k): to_text(v) for k, v in (ctx.get("headers") or {}).items()}
    reply = send(ctx, method, url, headers, **_request_body(ctx.get("body")))
    output = {"status_code": reply.status_code, "body": reply.body(), "headers": reply.headers}
    if not policy.accepts(ctx.step.config.get("accept_status"), reply.status_code):
        raise StepError(f"{method} {url} answered {reply.status_code}", kind="http_status",
                        status_code=reply.status_code, output=output, field="url")
    return output
