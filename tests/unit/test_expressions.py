"""Condition expressions: references are bound as data, never spliced into the source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from stepstream.errors import ExpressionError, TemplateError
from stepstream.expressions import check_syntax, evaluate

KNOWN = frozenset({"trigger", "fetch", "score"})


def scope(**body: Any) -> dict[str, Any]:
    """A scope whose trigger body is ``body``, plus a fetch and an llm score."""
    return {
        "trigger": {"body": body},
        "fetch": {"status_code": 200, "body": {"state": "done"}},
        "score": {"parsed": {"score": 8}},
    }


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{fetch.status_code} == 200", True),
        ("{fetch.status_code} != 200", False),
        ("{score.parsed.score} >= 7", True),
        ("{score.parsed.score} >= 7 and {fetch.body.state} == 'done'", True),
        ("{score.parsed.score} < 7 or {fetch.status_code} >= 500", False),
        ("not {fetch.status_code} == 200", False),
    ],
)
def test_evaluate_comparisons_return_their_truth(expression: str, expected: bool) -> None:
    assert evaluate(expression, scope(), KNOWN) is expected


@pytest.mark.parametrize(("approved", "expected"), [(True, True), (False, False), (0, False)])
def test_evaluate_json_booleans_equal_literal_true(approved: Any, expected: bool) -> None:
    result = evaluate("{trigger.body.approved} == true", scope(approved=approved), KNOWN)

    assert result is expected


def test_evaluate_null_literal_matches_json_null() -> None:
    assert evaluate("{trigger.body.note} == null", scope(note=None), KNOWN) is True
    assert evaluate("{trigger.body.note} == null", scope(note="x"), KNOWN) is False


def test_evaluate_whole_reference_to_a_list_is_no_truth_value() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("{trigger.body.tags}", scope(tags=["vip"]), KNOWN)

    assert str(caught.value) == (
        "'{trigger.body.tags}': a condition needs a boolean (or a number), not the list ['vip']"
    )


def test_evaluate_membership_in_list_value() -> None:
    expression = '"vip" in {trigger.body.tags}'

    assert evaluate(expression, scope(tags=["new", "vip"]), KNOWN) is True
    assert evaluate(expression, scope(tags=["new"]), KNOWN) is False


@pytest.mark.parametrize(
    "role",
    [
        "guest' or 'a' == 'a",
        "admin' or 'x",
        "{trigger.body.name}",
        '" == "" or "',
    ],
)
def test_evaluate_quotes_and_operators_in_value_stay_data(role: str) -> None:
    body = scope(role=role, name="admin")

    assert evaluate("{trigger.body.role} == 'admin'", body, KNOWN) is False


def test_evaluate_code_in_value_is_never_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    role = "__import__('os').system('touch c09_marker')"

    assert evaluate("{trigger.body.role} == 'admin'", scope(role=role), KNOWN) is False
    assert not (tmp_path / "c09_marker").exists()


def test_evaluate_incompatible_types_raise_error_naming_expression() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("{trigger.body.approved} > 3", scope(approved="yes"), KNOWN)

    assert str(caught.value) == (
        "'{trigger.body.approved} > 3': cannot order the string 'yes' and the number 3"
    )
    assert caught.value.field == "condition"


@pytest.mark.parametrize(
    "expression",
    [
        "{fetch.status_code} ==",
        "len({trigger.body.tags}) > 0",
        "__import__('os')",
        "{fetch.status_code} / 0 > 1",
        "{trigger.body.tags}[5] == 1",
        "{fetch.body}['missing'] == 1",
        "{trigger.body.tags}.index('z') == 0",
        "2 ** 1000 > 1",
        "-{trigger.body.tags} == 1",
    ],
)
def test_evaluate_malformed_or_failing_expression_raises_expression_error(expression: str) -> None:
    with pytest.raises(ExpressionError, match="cannot evaluate") as caught:
        evaluate(expression, scope(tags=["a"]), KNOWN)

    assert caught.value.field == "condition"


def test_evaluate_unknown_step_raises_error_naming_it() -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate("{fetsh.status_code} == 200", scope(), KNOWN)

    assert str(caught.value) == (
        "condition: {fetsh.status_code} cannot be resolved: there is no step 'fetsh'"
    )


def test_evaluate_missing_key_raises_template_error_naming_reference() -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate("{trigger.body.approved}", scope(order="A-6"), KNOWN)

    assert caught.value.reference == "trigger.body.approved"
    assert caught.value.field == "condition"


def test_evaluate_reference_to_step_not_run_raises_template_error() -> None:
    partial = {"trigger": {"body": {}}}

    with pytest.raises(TemplateError, match="step 'fetch' has not run yet") as caught:
        evaluate("{fetch.status_code} == 200", partial, KNOWN)

    assert caught.value.reference == "fetch.status_code"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), (0, False), (1, True), (2.5, True), (-1, True), (0.0, False)],
)
def test_evaluate_truth_of_booleans_and_numbers(value: Any, expected: bool) -> None:
    assert evaluate("{trigger.body.v}", scope(v=value), KNOWN) is expected


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("false", "the string 'false'"),
        ("", "the string ''"),
        ("yes", "the string 'yes'"),
        (None, "the null None"),
        ([], "the list []"),
        ([1], "the list [1]"),
        ({"a": 1}, "the object {'a': 1}"),
    ],
)
def test_evaluate_truth_of_anything_else_is_an_error_naming_the_value(
    value: Any, named: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("{trigger.body.v}", scope(v=value), KNOWN)

    assert str(caught.value).endswith(f"a condition needs a boolean (or a number), not {named}")
    assert caught.value.field == "condition"


@pytest.mark.parametrize(
    "expression", ["not {trigger.body.v}", "{trigger.body.v} and true", "false or {trigger.body.v}"]
)
def test_evaluate_operands_of_and_or_not_follow_the_truth_rule(expression: str) -> None:
    with pytest.raises(ExpressionError, match="not the string 'false'"):
        evaluate(expression, scope(v="false"), KNOWN)


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        (1, 1.0, True),
        ("a", "a", True),
        ("a", "A", False),
        (True, True, True),
        (0, False, True),
        (2, True, True),
        ([1, {"a": None}], [1, {"a": None}], True),
        ({"a": 1}, {"a": 2}, False),
        (None, None, True),
        (None, "x", False),
        (0, None, False),
    ],
)
def test_evaluate_equality_of_one_kind_or_with_null(left: Any, right: Any, expected: bool) -> None:
    body = scope(a=left, b=right)

    assert evaluate("{trigger.body.a} == {trigger.body.b}", body, KNOWN) is expected
    assert evaluate("{trigger.body.a} != {trigger.body.b}", body, KNOWN) is (not expected)


@pytest.mark.parametrize(
    ("left", "right", "words"),
    [
        ("1", 1, "cannot compare the string '1' with the number 1"),
        ("true", True, "cannot compare the string 'true' with the boolean True"),
        ([1], {"a": 1}, "cannot compare the list [1] with the object {'a': 1}"),
        ("", [], "cannot compare the string '' with the list []"),
    ],
)
def test_evaluate_equality_of_different_kinds_is_an_error(
    left: Any, right: Any, words: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("{trigger.body.a} == {trigger.body.b}", scope(a=left, b=right), KNOWN)

    assert str(caught.value).endswith(words)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{trigger.body.n} < 10", True),
        ("1 < {trigger.body.n} <= 3", True),
        ("{trigger.body.s} < 'b'", True),
        ("{trigger.body.s} >= 'apple'", False),
    ],
)
def test_evaluate_ordering_of_two_numbers_or_two_strings(expression: str, expected: bool) -> None:
    assert evaluate(expression, scope(n=3, s="ab"), KNOWN) is expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("3", "cannot order the string '3' and the number 10"),
        (None, "cannot order the null None and the number 10"),
        (True, "cannot order the boolean True and the number 10"),
        ([3], "cannot order the list [3] and the number 10"),
    ],
)
def test_evaluate_ordering_of_other_kinds_is_an_error(value: Any, words: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("{trigger.body.n} < 10", scope(n=value), KNOWN)

    assert str(caught.value).endswith(words)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'err' in {trigger.body.text}", True),
        ("'xyz' not in {trigger.body.text}", True),
        ("2 in {trigger.body.items}", True),
        ("{trigger.body.items} in [[1, 2]]", True),
        ("'id' in {trigger.body.obj}", True),
        ("'name' in {trigger.body.obj}", False),
    ],
)
def test_evaluate_membership_in_strings_lists_and_object_keys(
    expression: str, expected: bool
) -> None:
    body = scope(text="an error", items=[1, 2], obj={"id": 7})

    assert evaluate(expression, body, KNOWN) is expected


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("1 in {trigger.body.text}", "cannot look for the number 1 in the string 'an error'"),
        ("7 in {trigger.body.obj}", "cannot look for the number 7 in the object {'id': 7}"),
        ("'a' in {trigger.body.n}", "cannot look for the string 'a' in the number 5"),
    ],
)
def test_evaluate_membership_of_mismatched_kinds_is_an_error(expression: str, words: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression, scope(text="an error", obj={"id": 7}, n=5), KNOWN)

    assert str(caught.value).endswith(words)


BIG = 12345678901234567890


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{trigger.body.a} == {trigger.body.b}", False),
        ("{trigger.body.a} != {trigger.body.b}", True),
        ("{trigger.body.a} < {trigger.body.b}", True),
        ("{trigger.body.b} - {trigger.body.a} == 1", True),
        ("{trigger.body.a} == 12345678901234567890", True),
        ("{trigger.body.a} == 12345678901234567890.0", False),
    ],
)
def test_evaluate_big_integers_compare_exactly(expression: str, expected: bool) -> None:
    assert evaluate(expression, scope(a=BIG, b=BIG + 1), KNOWN) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "{trigger.body.n} + 1 == 6",
        "{trigger.body.n} * 2 - 1 == 9",
        "{trigger.body.n} / 2 == 2.5",
        "{trigger.body.n} % 2 == 1",
        "-{trigger.body.n} < 0",
    ],
)
def test_evaluate_arithmetic_on_numbers(expression: str) -> None:
    assert evaluate(expression, scope(n=5), KNOWN) is True


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("{trigger.body.s} + 'x' == 'ax'", "not the string 'a' and the string 'x'"),
        ("{trigger.body.s} * 3 == 'aaa'", "not the string 'a' and the number 3"),
        ("{trigger.body.items} + [3] == [1, 3]", "not the list [1] and the list [3]"),
        ("true + 1 == 2", "not the boolean True and the number 1"),
    ],
)
def test_evaluate_arithmetic_on_anything_but_numbers_is_an_error(
    expression: str, words: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(expression, scope(s="a", items=[1]), KNOWN)

    assert str(caught.value).endswith(f"arithmetic needs numbers, {words}")


HOSTILE_VALUES = [
    "' or 'a' == 'a",
    '" or "a" == "a',
    "__import__('os').system('touch c09_marker')",
    "{trigger.body.other}",
    "1 == 1",
    "true",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_evaluate_hostile_value_compared_as_the_string_it_is(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    body = scope(a=value, same=value, other="x")

    assert evaluate("{trigger.body.a} == 'admin'", body, KNOWN) is False
    assert evaluate("{trigger.body.a} == {trigger.body.same}", body, KNOWN) is True
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_evaluate_hostile_value_alone_is_a_string_not_a_truth(value: str) -> None:
    with pytest.raises(ExpressionError, match="not the string"):
        evaluate("{trigger.body.a}", scope(a=value), KNOWN)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{trigger.body.missing ?? 0} > 3", False),
        ('{trigger.body.missing ?? "none"} == "none"', True),
        ("{trigger.body.missing ?? true}", True),
        ("{trigger.body.present ?? 0} > 3", True),
        ("{later.parsed.score ?? 0} >= 7", False),
    ],
)
def test_evaluate_default_used_only_when_the_value_is_absent(
    expression: str, expected: bool
) -> None:
    assert evaluate(expression, scope(present=5), KNOWN | {"later"}) is expected


def test_evaluate_literal_boolean_condition_needs_no_parsing() -> None:
    assert evaluate(True, {}, KNOWN) is True
    assert evaluate(False, {}, KNOWN) is False


@pytest.mark.parametrize(
    ("expression", "error"),
    [
        ("{fetch.status_code} == 200", None),
        ("{a.b ?? 0} > 1 and not {c} in [1, 2]", None),
        ("{fetch.status_code} ==", "the condition is not a valid expression: invalid syntax"),
        ("(true", "the condition is not a valid expression: '(' was never closed"),
        ("", "the condition is not a valid expression: invalid syntax"),
    ],
)
def test_check_syntax_says_why_a_condition_does_not_parse(
    expression: str, error: str | None
) -> None:
    assert check_syntax(expression) == error


def test_evaluate_keeps_each_conditions_names_apart() -> None:
    """One evaluator serves every condition of a thread; no value leaks from one to the next."""
    scope = {"trigger": {"body": {"a": 1, "b": 2}}}
    known = {"trigger"}

    assert evaluate("{trigger.body.a} == 1", scope, known) is True
    assert evaluate("{trigger.body.b} == 1", scope, known) is False
    with pytest.raises(ExpressionError):
        evaluate("_ref1 == 1", scope, known)


def test_evaluate_in_threads_at_once() -> None:
    """Conditions evaluated in several threads at once each see their own values."""
    from concurrent.futures import ThreadPoolExecutor

    def check(n: int) -> bool:
        scope = {"trigger": {"body": {"n": n}}}
        return all(evaluate(f"{{trigger.body.n}} == {n}", scope, {"trigger"}) for _ in range(200))

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(check, range(8)))
