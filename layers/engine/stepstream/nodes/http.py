"""``http``: call a URL and hand its status, JSON (or text) body and headers on.

A response of any status completes the step (workflows branch on ``status_code``);
a request that gets no response (refused, timed out, bad URL) fails it.
"""

from __future__ import annotations

from typing import Any

import httpx

from stepstream.errors import StepError
from stepstream.nodes._context import StepContext
from stepstream.nodes._http import client
from stepstream.templates import to_text


def _request_body(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if isinstance(body, (dict, list)):
        return {"json": body}
    return {"content": to_text(body)}


def _response_body(response: httpx.Response) -> Any:
    if not response.content:
        return ""
    try:
        return response.json()
    except ValueError:
        return response.text


def run(ctx: StepContext) -> dict[str, Any]:
    """Send the request the step describes."""
    url = ctx.url("url")
    method = str(ctx.get("method", "GET")).upper()
    headers = {str(k): to_text(v) for k, v in (ctx.get("headers") or {}).items()}
    try:
        response = client().request(
            method,
            url,
            headers=headers,
            timeout=float(ctx.get("timeout", 30)),
            **_request_body(ctx.get("body")),
        )
    except httpx.HTTPError as exc:
        raise StepError(f"{method} {url} failed: {exc}", field="url") from exc
    return {
        "status_code": response.status_code,
        "body": _response_body(response),
        "headers": dict(response.headers),
    }

