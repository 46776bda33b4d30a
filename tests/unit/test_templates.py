"""``{step_id.field}`` templates: typed whole values, JSON inside text, literal prose."""

from __future__ import annotations

import json

import pytest
from stepstream.errors import StepError, TemplateError
from stepstream.templates import references, render, render_string, to_text

ITEMS = [{"name": "Ann Example", "qty": 2}]
SCOPE = {
    "trigger": {"body": {"items": ITEMS, "vip": True, "note": None, "amount": 19.99}},
    "fetch": {"status_code": 200, "body": {"name": "Zoë", "id": 42, "tags": ["a", "b"]}},
}
KNOWN = frozenset({"trigger", "fetch", "later"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{fetch.status_code}", 200),
        ("{trigger.body.amount}", 19.99),
        ("{trigger.body.vip}", True),
        ("{trigger.body.note}", None),
        ("{trigger.body.items}", ITEMS),
        ("{fetch.body}", {"name": "Zoë", "id": 42, "tags": ["a", "b"]}),
    ],
)
def test_render_string_whole_template_keeps_value_type(text: str, expected: object) -> None:
    value = render_string(text, SCOPE, KNOWN)

    assert value == expected
    assert type(value) is type(expected)


def test_render_string_list_index_reads_element() -> None:
    assert render_string("{trigger.body.items.0.name}", SCOPE, KNOWN) == "Ann Example"
    assert render_string("{fetch.body.tags.1}", SCOPE, KNOWN) == "b"


def test_render_string_structures_in_text_render_as_json() -> None:
    text = "Items: {trigger.body.items}; vip={trigger.body.vip}; note={trigger.body.note}"

    rendered = render_string(text, SCOPE, KNOWN)

    prefix, rest = rendered.split(": ", 1)
    items_text, flags = rest.split("; ", 1)
    assert prefix == "Items"
    assert json.loads(items_text) == ITEMS
    assert flags == "vip=true; note=null"
    for python_repr in ("'name'", "True", "None"):
        assert python_repr not in rendered


def test_render_string_numbers_in_text_keep_their_digits() -> None:
    scope = {"q": {"price": 30.4, "tiny": 1e-7, "order_id": 12345678901234567890}}

    rendered = render_string("{q.price} {q.tiny} {q.order_id}", scope, {"q"})

    assert rendered == "30.4 1e-07 12345678901234567890"


def test_render_string_template_with_padding_renders_json_text() -> None:
    rendered = render_string("{trigger.body.items} ", SCOPE, KNOWN)

    assert isinstance(rendered, str)
    assert rendered.endswith(" ")
    assert json.loads(rendered) == ITEMS


def test_render_string_non_ascii_text_kept_verbatim() -> None:
    assert render_string("Thanks {fetch.body.name}!", SCOPE, KNOWN) == "Thanks Zoë!"


def test_render_string_json_braces_in_prose_left_untouched() -> None:
    text = 'Payload was {"status": "ok"} for {fetch.body.name}'

    assert render_string(text, SCOPE, KNOWN) == 'Payload was {"status": "ok"} for Zoë'


@pytest.mark.parametrize("text", ["{nobody.name}", "see {nobody.name} and {x}", "{x}"])
def test_render_string_unknown_head_stays_literal(text: str) -> None:
    assert render_string(text, SCOPE, KNOWN) == text


def test_render_string_substituted_value_not_expanded_again() -> None:
    scope = {"trigger": {"body": {"role": "{fetch.status_code}"}}, "fetch": SCOPE["fetch"]}

    assert render_string("role={trigger.body.role}", scope, KNOWN) == "role={fetch.status_code}"
    assert render_string("{trigger.body.role}", scope, KNOWN) == "{fetch.status_code}"


def test_render_string_missing_key_raises_error_naming_reference_and_key() -> None:
    with pytest.raises(TemplateError) as caught:
        render_string("New user {fetch.body.nmae}", SCOPE, KNOWN, field="message")

    error = caught.value
    assert isinstance(error, StepError)
    assert error.reference == "fetch.body.nmae"
    assert error.field == "message"
    assert "'nmae' not found in fetch.body" in str(error)


def test_render_string_step_not_run_raises_error_naming_step() -> None:
    with pytest.raises(TemplateError, match="reads step 'later', which has not run") as caught:
        render_string("{later.body}", SCOPE, KNOWN, field="url")

    assert caught.value.reference == "later.body"
    assert caught.value.field == "url"


@pytest.mark.parametrize("path", ["fetch.body.tags.2", "fetch.body.tags.x", "fetch.status_code.0"])
def test_render_string_bad_index_or_scalar_segment_raises(path: str) -> None:
    with pytest.raises(TemplateError, match="not found in"):
        render_string("{" + path + "}", SCOPE, KNOWN)


def test_render_nested_mapping_renders_every_string_and_keeps_types() -> None:
    value = {
        "items": "{trigger.body.items}",
        "meta": {"vip": "{trigger.body.vip}", "count": 3},
        "list": ["{fetch.body.id}", "id {fetch.body.id}", None],
    }

    assert render(value, SCOPE, KNOWN) == {
        "items": ITEMS,
        "meta": {"vip": True, "count": 3},
        "list": [42, "id 42", None],
    }


def test_render_nested_error_names_top_level_key_as_field() -> None:
    with pytest.raises(TemplateError) as caught:
        render({"body": {"user": "{fetch.body.missing}"}}, SCOPE, KNOWN)

    assert caught.value.field == "body"


def test_render_non_string_scalars_returned_unchanged() -> None:
    assert render(7, SCOPE, KNOWN) == 7
    assert render(None, SCOPE, KNOWN) is None


def test_references_lists_only_known_heads() -> None:
    text = '{fetch.body.name} {nobody.x} {trigger.body} {"a": 1}'

    assert references(text, KNOWN) == ["fetch.body.name", "trigger.body"]


@pytest.mark.parametrize(
    ("value", "text"),
    [("plain", "plain"), (True, "true"), (None, "null"), (2.5, "2.5"), ({"a": [1]}, '{"a":[1]}')],
)
def test_to_text_non_strings_become_json(value: object, text: str) -> None:
    assert to_text(value) == text
