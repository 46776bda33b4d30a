"""``notify``: tell someone. ``webhook`` really POSTs; ``log`` writes the log.

``email`` and ``slack`` have no provider wired yet: they log what they would send
and say so in the output (``delivered: false`` and a ``note``), so a workflow that
depends on them can see that nothing left the building.
"""

from __future__ import annotations

import logging
from typing import Any

from stepstream.errors import StepError
from stepstream.nodes._context import StepContext
from stepstream.nodes._http import send

logger = logging.getLogger(__name__)

CHANNELS = frozenset({"log", "email", "slack", "webhook"})


def _post_webhook(ctx: StepContext, url: str, payload: dict[str, Any]) -> int:
    if not url.startswith(("http://", "https://")):
        raise StepError(f"webhook needs an http(s) 'url', got {url!r}", field="url")
    reply = send(ctx, "POST", url, {}, json=payload)
    if reply.status_code >= 400:
        raise StepError(f"POST {url} answered {reply.status_code}", kind="http_status",
                        status_code=reply.status_code, field="url",
                        output={"url": url, "status_code": reply.status_code})
    return reply.status_code


def run(ctx: StepContext) -> dict[str, Any]:
    """Send (or log) the message on the step's channel."""
    channel = str(ctx.get("channel", "log"))
    if channel not in CHANNELS:
        known = ", ".join(sorted(CHANNELS))
        raise StepError(f"unknown channel {channel!r} (known: {known})", field="channel")
    output: dict[str, Any] = {
        "channel": channel,
        "message": ctx.text("message"),
        "recipient": ctx.text("recipient"),
        "subject": ctx.text("subject", "Workflow Notification"),
    }
    if channel == "webhook":
        url = ctx.url("url") if ctx.step.config.get("url") else output["recipient"]
        payload = {**output, "run_id": ctx.run_id, "step_id": ctx.step.id}
        output.update(url=url, status_code=_post_webhook(ctx, url, payload))
        output.update(sent=True, delivered=True)
        return output
    logger.info(
        "notification",
        extra={"channel": channel, "recipient": output["recipient"], "text": output["message"]},
    )
    output.update(sent=channel == "log", delivered=channel == "log")
    if channel != "log":
        output["note"] = f"no {channel} provider is configured yet; the message was only logged"
    return output
