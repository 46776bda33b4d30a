"""JSON as the one encoding for user data at rest and on the wire.

User data (trigger bodies, step outputs, event payloads) is stored in DynamoDB as
JSON text, never as DynamoDB numbers: boto3 refuses Python floats, turns numbers
into ``Decimal`` on the way back, and a ``float`` detour rounds big integers. JSON
text keeps ``30.4`` as ``30.4`` and ``12345678901234567890`` exact (case C01).
"""

from __future__ import annotations

import json
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


def dumps(value: Any) -> str:
    """Encode ``value`` as compact JSON, accepting Decimals, sets and bytes."""
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """Decode JSON text."""
    return json.loads(text)
