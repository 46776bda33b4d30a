"""JSON as the encoding of user data: numbers come back exactly as they went in."""

from __future__ import annotations

from decimal import Decimal

import pytest
from stepstream import _json


@pytest.mark.parametrize("number", [30.4, 0.1, 1e-7, 19.99, 0.075, -2.5e300])
def test_dumps_floats_round_trip_exactly(number: float) -> None:
    text = _json.dumps({"n": number})

    assert _json.loads(text)["n"] == number
    assert "999999" not in text
    assert "000001" not in text


def test_dumps_float_uses_shortest_text() -> None:
    assert _json.dumps([30.4, 0.1, 1e-7]) == "[30.4,0.1,1e-07]"


@pytest.mark.parametrize("number", [12345678901234567890, -(2**70), 2**64 + 1])
def test_dumps_big_int_stays_exact_integer(number: int) -> None:
    text = _json.dumps(number)

    assert text == str(number)
    decoded = _json.loads(text)
    assert isinstance(decoded, int)
    assert decoded == number


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("30.4"), "30.4"),
        (Decimal("30.40"), "30.4"),
        (Decimal("1E-7"), "1e-07"),
        (Decimal("12345678901234567890"), "12345678901234567890"),
        (Decimal("7"), "7"),
        (Decimal("5.0"), "5"),
    ],
)
def test_dumps_decimal_becomes_json_number(value: Decimal, text: str) -> None:
    assert _json.dumps(value) == text


def test_dumps_decimal_from_storage_matches_original_number() -> None:
    stored = {"price": Decimal("30.4"), "order_id": Decimal("12345678901234567890")}

    assert _json.loads(_json.dumps(stored)) == {"price": 30.4, "order_id": 12345678901234567890}


def test_dumps_sets_tuples_and_bytes_become_json() -> None:
    assert _json.dumps({"t": (1, 2), "s": {3}, "b": "Zoë".encode()}) == (
        '{"t":[1,2],"s":[3],"b":"Zoë"}'
    )


def test_dumps_keeps_non_ascii_and_is_compact() -> None:
    assert _json.dumps({"name": "Zoë", "n": [1, 2]}) == '{"name":"Zoë","n":[1,2]}'


def test_dumps_unknown_type_raises_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        _json.dumps(object())


def test_loads_accepts_bytes() -> None:
    assert _json.loads(b'{"a": 1.5}') == {"a": 1.5}
