"""Idempotency keys: what counts as the same input, and which keys are accepted."""

from __future__ import annotations

import pytest

from stepstream import StepstreamError
from stepstream.request_keys import MAX_KEY_LENGTH, check_key, fingerprint


def test_fingerprint_ignores_key_order_and_spacing() -> None:
    """Two encodings of one input are one request."""
    assert fingerprint({"a": 1, "b": {"c": [1, 2]}}) == fingerprint({"b": {"c": [1, 2]}, "a": 1})


@pytest.mark.parametrize("other", [{"a": 2}, {"a": "1"}, {"a": 1, "b": None}, {"a": 1.5}, [1]])
def test_fingerprint_tells_different_inputs_apart(other: object) -> None:
    """A changed value, type or key is another request."""
    assert fingerprint({"a": 1}) != fingerprint(other)


def test_fingerprint_is_sha256_hex() -> None:
    """The fingerprint is 64 hex digits, whatever the input's size or text."""
    value = fingerprint({"text": "h\u00e9llo \ud83d", "big": 12345678901234567890})

    assert len(value) == 64 and int(value, 16) >= 0


@pytest.mark.parametrize("key", ["k", "order-1", "k" * MAX_KEY_LENGTH, "with spaces #1"])
def test_check_key_accepts_1_to_255_characters(key: str) -> None:
    """Any key of 1 to 255 characters passes."""
    check_key(key)


@pytest.mark.parametrize("key", ["", "  ", "k" * (MAX_KEY_LENGTH + 1)])
def test_check_key_refuses_empty_or_too_long(key: str) -> None:
    """An empty key, or one past the limit, is a client error naming the limit."""
    with pytest.raises(StepstreamError, match="1 to 255 characters"):
        check_key(key)
