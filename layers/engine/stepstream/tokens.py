"""Signed, short-lived stream tokens: access to one run's events, for a while.

Browsers' ``EventSource`` cannot send headers, so a stream is authorised by a token
in its URL. A token is ``<expires>.<signature>``: the expiry (Unix seconds) and an
HMAC-SHA256 over the run id and that expiry, keyed by a secret from configuration.
It opens that run's stream alone, until it expires; the API hands out a fresh one
with every run it returns.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

TOKEN_TTL_SECONDS = 15 * 60


class TokenError(Exception):
    """A stream token is missing, malformed, expired or not for this run."""


def _signature(secret: str, run_id: str, expires: int) -> str:
    message = f"{run_id}.{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def issue(secret: str, run_id: str, ttl: int = TOKEN_TTL_SECONDS, now: float | None = None) -> str:
    """A token that opens ``run_id``'s stream for ``ttl`` seconds."""
    expires = int((time.time() if now is None else now) + ttl)
    return f"{expires}.{_signature(secret, run_id, expires)}"


def verify(secret: str, run_id: str, token: str | None, now: float | None = None) -> None:
    """Accept ``token`` for ``run_id`` or raise ``TokenError`` saying why not."""
    if not token:
        raise TokenError("a stream token is required (the ?token= of the run's stream_url)")
    expires_text, _, signature = token.partition(".")
    if not expires_text.isdigit() or not signature:
        raise TokenError("the stream token is malformed")
    expected = _signature(secret, run_id, int(expires_text))
    if not hmac.compare_digest(expected, signature):
        raise TokenError("the stream token is not valid for this run")
    if int(expires_text) < (time.time() if now is None else now):
        raise TokenError("the stream token has expired; GET the run for a fresh stream_url")


def stream_url(base: str, secret: str, run_id: str) -> str:
    """The URL of ``run_id``'s stream on ``base``, with a token when a secret is set."""
    url = f"{base.rstrip('/')}/api/v1/runs/{quote(run_id, safe='')}/stream"
    return f"{url}?token={issue(secret, run_id)}" if secret else url
