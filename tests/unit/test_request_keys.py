"""Idempotency keys: what counts as the same input, and which keys are accepted."""

from __future__ import annotations

import pytest

from stepstream import StepstreamError
from stepstream.request_keys import (
    MAX_KEY_LENGTH,
    check_key,
    fingerprint,
    key_item_id,
    key_text,
)


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


def test_check_key_counts_characters_of_utf8_text_read_as_latin1() -> None:
    """200 'é' sent as UTF-8 and decoded one byte a character is still 200 characters."""
    check_key(("é" * MAX_KEY_LENGTH).encode().decode("latin-1"))

    with pytest.raises(StepstreamError, match="this one has 256"):
        check_key(("é" * (MAX_KEY_LENGTH + 1)).encode().decode("latin-1"))


@pytest.mark.parametrize("text", ["order-1", "é" * 3, "日本", "Ã©"])
def test_key_text_reads_utf8_decoded_as_latin1_again(text: str) -> None:
    """What an ASGI server makes of a UTF-8 header value is turned back into its text."""
    assert key_text(text.encode().decode("latin-1")) == text


@pytest.mark.parametrize("text", ["order-1", "é" * 3, "日本"])
def test_key_text_keeps_text_already_decoded(text: str) -> None:
    """A value API Gateway already decoded is kept as it is."""
    assert key_text(text) == text


def test_key_item_id_is_bounded_whatever_the_workflow_id_and_key() -> None:
    """A 2 KB workflow id and the longest key give an id as short as tiny ones."""
    long_id = key_item_id("w" * 2048, "k" * MAX_KEY_LENGTH)

    assert long_id.startswith("idem#")
    assert len(long_id) == len(key_item_id("w", "k")) == 69


def test_key_item_id_keeps_pairs_apart_whatever_they_contain() -> None:
    """No separator inside the workflow id or the key can make two pairs one."""
    assert key_item_id("a#b", "c") != key_item_id("a", "b#c")
    assert key_item_id('a","b', "c") != key_item_id("a", 'b","c')
    assert key_item_id("w1", "k") != key_item_id("w2", "k")
