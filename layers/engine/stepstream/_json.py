"""JSON as the one encoding for user data at rest and on the wire.

User data (trigger bodies, step outputs, event payloads) is stored in DynamoDB as
JSON text, never as DynamoDB numbers: boto3 refuses Python floats, turns numbers
into ``Decimal`` on the way back, and a ``float`` detour rounds big integers. JSON
text keeps ``30.4`` as ``30.4`` and ``12345678901234567890`` exact (case C01).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # A Decimal that holds an integer stays an exact integer; any other becomes the
        # nearest float, as every JSON reader would read it anyway.
        return int(value) if value == value.to_integral_value() else float(str(value))
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Encode ``value`` as compact JSON, accepting Decimals, sets and bytes.

    NaN and infinities, which JSON cannot carry and browsers refuse, become null.
    Text that cannot be UTF-8 (a lone surrogate) is written as JSON's escapes.
    """
    try:
        text = json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except ValueError:
        return dumps(_finite(value))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(value, default=_default, separators=(",", ":"))
    return text


def size(text: str) -> int:
    """Bytes of ``text`` in UTF-8, as DynamoDB and the wire count it (not characters)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def summary(value: Any, limit: int) -> Any:
    """``value`` itself if its JSON fits in ``limit`` bytes, else a marked, bounded preview.

    The preview is at most ``limit // 4`` characters, so at most ``limit`` bytes.
    """
    text = dumps(value)
    if size(text) <= limit:
        return value
    return {"truncated": True, "size": size(text), "preview": text[: limit // 4]}


def loads(text: str | bytes) -> Any:
    """Decode JSON text."""
    return json.loads(text)
