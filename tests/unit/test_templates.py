"""``{step_id.field}`` templates: typed whole values, JSON inside text, literal prose."""

from __future__ import annotations

import json

import pytest
from stepstream.errors import StepError, TemplateError
from stepstream.templates import SKIPPED, references, render, render_string, to_text

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


@pytest.mark.parametrize(
    ("text", "head"),
    [("{nobody.name}", "nobody"), ("see {x} and {nobody.name}", "x"), ("{x}", "x")],
)
def test_render_string_unknown_head_is_a_reference_that_fails(text: str, head: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_string(text, SCOPE, KNOWN, field="message")

    assert str(caught.value).endswith(f"cannot be resolved: there is no step '{head}'")
    assert caught.value.reference.split(".")[0] == head


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
    assert str(error) == (
        "message: {fetch.body.nmae} cannot be resolved: "
        "'nmae' is not in fetch.body (it has: name, id, tags)"
    )


def test_render_string_step_not_run_raises_error_naming_step() -> None:
    with pytest.raises(TemplateError) as caught:
        render_string("{later.body}", SCOPE, KNOWN, field="url")

    assert str(caught.value) == "url: {later.body} cannot be resolved: step 'later' has not run yet"

    assert caught.value.reference == "later.body"
    assert caught.value.field == "url"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("fetch.body.tags.2", "fetch.body.tags has no item 2 (it has 2 items)"),
        ("fetch.body.tags.x", "fetch.body.tags has no item x (it has 2 items)"),
        ("fetch.status_code.0", "fetch.status_code is a number, so it has no '0'"),
        ("trigger.body.note.x", "trigger.body.note is null, so it has no 'x'"),
    ],
)
def test_render_string_bad_index_or_scalar_segment_raises_saying_why(path: str, why: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render_string("{" + path + "}", SCOPE, KNOWN)

    assert str(caught.value) == f"value: {{{path}}} cannot be resolved: {why}"


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


def test_render_nested_error_names_the_given_field() -> None:
    with pytest.raises(TemplateError) as caught:
        render({"user": ["{fetch.body.missing}"]}, SCOPE, KNOWN, field="body")

    assert caught.value.field == "body"
    assert str(caught.value).startswith("body: {fetch.body.missing} cannot be resolved")


def test_render_non_string_scalars_returned_unchanged() -> None:
    assert render(7, SCOPE, KNOWN) == 7
    assert render(None, SCOPE, KNOWN) is None


def test_references_lists_every_template_whatever_its_head() -> None:
    text = '{fetch.body.name} {nobody.x} \\{escaped.y} {trigger.body ?? []} {"a": 1} { x }'

    found = references(text)

    assert [ref.path for ref in found] == ["fetch.body.name", "nobody.x", "trigger.body"]
    assert [ref.head for ref in found] == ["fetch", "nobody", "trigger"]
    assert [ref.has_default for ref in found] == [False, False, True]
    assert found[2].default == []


@pytest.mark.parametrize(
    ("value", "text"),
    [("plain", "plain"), (True, "true"), (None, "null"), (2.5, "2.5"), ({"a": [1]}, '{"a": [1]}')],
)
def test_to_text_non_strings_become_json(value: object, text: str) -> None:
    assert to_text(value) == text


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        (r"\{x.y}", "{x.y}"),
        (r"\{nobody.name} stays text", "{nobody.name} stays text"),
        (
            r"literal \{fetch.body.name}, value {fetch.body.name}",
            "literal {fetch.body.name}, value Zoë",
        ),
        (r'\{"status": "ok"}', '{"status": "ok"}'),
    ],
)
def test_render_string_escaped_brace_renders_literal_brace(text: str, rendered: str) -> None:
    assert render_string(text, SCOPE, KNOWN) == rendered


@pytest.mark.parametrize(
    ("default", "value"),
    [
        ('"friend"', "friend"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("3", 3),
        ("-2.5", -2.5),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[]", []),
        ("{}", {}),
    ],
)
def test_render_string_default_of_each_json_kind_keeps_its_type(
    default: str, value: object
) -> None:
    rendered = render_string("{fetch.body.missing ?? " + default + "}", SCOPE, KNOWN)

    assert rendered == value
    assert type(rendered) is type(value)


@pytest.mark.parametrize(
    ("default", "text"), [('"friend"', "hi friend!"), ("null", "hi null!"), ("[]", "hi []!")]
)
def test_render_string_default_inside_text_renders_as_json_text(default: str, text: str) -> None:
    assert render_string("hi {fetch.body.missing ?? " + default + "}!", SCOPE, KNOWN) == text


@pytest.mark.parametrize(
    "scope",
    [
        {**SCOPE, "later": SKIPPED},
        SCOPE,
        {**SCOPE, "later": {"body": {}}},
    ],
    ids=["skipped", "not-run", "key-missing"],
)
def test_render_string_default_used_whenever_the_value_is_absent(scope: dict) -> None:
    assert render_string('{later.body.name ?? "n/a"}', scope, KNOWN) == "n/a"


def test_render_string_default_not_used_for_a_present_null() -> None:
    assert render_string('{trigger.body.note ?? "n/a"}', SCOPE, KNOWN) is None


def test_render_string_default_without_space_or_in_single_quotes() -> None:
    assert render_string('{fetch.body.missing??"x"}', SCOPE, KNOWN) == "x"
    # A single-quoted default is no JSON: the braces are plain text, not a template.
    text = "{fetch.body.missing ?? 'x'}"
    assert render_string(text, SCOPE, KNOWN) == text


def test_render_string_skipped_step_error_says_it_was_skipped() -> None:
    scope = {**SCOPE, "later": SKIPPED}

    with pytest.raises(TemplateError) as caught:
        render_string("Thanks {later.body.name}", scope, KNOWN, field="message")

    assert str(caught.value) == (
        "message: {later.body.name} cannot be resolved: step 'later' was skipped in this run"
    )
    assert caught.value.reference == "later.body.name"


HOSTILE = {"trigger": {"body": {"base": "http://api.test", "path": "../../admin?force=1#", "n": 7}}}


def test_render_string_url_first_template_raw_and_later_ones_encoded() -> None:
    url = render_string("{trigger.body.base}/files/{trigger.body.path}", HOSTILE, KNOWN, url=True)

    assert url == "http://api.test/files/..%2F..%2Fadmin%3Fforce%3D1%23"


def test_render_string_url_query_values_encoded_one_by_one() -> None:
    scope = {"trigger": {"body": {"q": "a b&c=d", "n": 7, "tags": ["x", "y"]}}}
    text = "http://api.test/search?q={trigger.body.q}&n={trigger.body.n}&t={trigger.body.tags}"

    url = render_string(text, scope, KNOWN, url=True)

    assert url == "http://api.test/search?q=a%20b%26c%3Dd&n=7&t=%5B%22x%22%2C%20%22y%22%5D"


def test_render_string_outside_urls_inserts_values_unencoded() -> None:
    rendered = render_string("path {trigger.body.path}", HOSTILE, KNOWN)

    assert rendered == "path ../../admin?force=1#"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"name": "Zoë", "ok": True, "none": None}, '{"name": "Zoë", "ok": true, "none": null}'),
        ([1, 2.5, False, None, "s"], '[1, 2.5, false, null, "s"]'),
        ({"nested": [{"deep": True}]}, '{"nested": [{"deep": true}]}'),
        (False, "false"),
        (12345678901234567890, "12345678901234567890"),
    ],
)
def test_render_string_structures_inside_text_are_json_never_python_repr(
    value: object, text: str
) -> None:
    rendered = render_string("v={step.value}", {"step": {"value": value}}, {"step"})

    assert rendered == f"v={text}"
    for python_repr in ("True", "False", "None", "'"):
        assert python_repr not in rendered
