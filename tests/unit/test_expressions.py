"""Condition expressions: references are bound as data, never spliced into the source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from stepstream.errors import ExpressionError, TemplateError
from stepstream.expressions import evaluate

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


def test_evaluate_whole_reference_returns_value_itself() -> None:
    assert evaluate("{trigger.body.tags}", scope(tags=["vip"]), KNOWN) == ["vip"]


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
    with pytest.raises(ExpressionError, match="incompatible types") as caught:
        evaluate("{trigger.body.approved} > 3", scope(approved="yes"), KNOWN)

    assert "{trigger.body.approved} > 3" in str(caught.value)
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
    ],
)
def test_evaluate_malformed_or_failing_expression_raises_expression_error(expression: str) -> None:
    with pytest.raises(ExpressionError, match="cannot evaluate") as caught:
        evaluate(expression, scope(tags=["a"]), KNOWN)

    assert caught.value.field == "condition"


def test_evaluate_unknown_step_raises_error_naming_it() -> None:
    with pytest.raises(ExpressionError, match="there is no step 'fetsh'"):
        evaluate("{fetsh.status_code} == 200", scope(), KNOWN)


def test_evaluate_missing_key_raises_template_error_naming_reference() -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate("{trigger.body.approved}", scope(order="A-6"), KNOWN)

    assert caught.value.reference == "trigger.body.approved"
    assert caught.value.field == "condition"


def test_evaluate_reference_to_step_not_run_raises_template_error() -> None:
    partial = {"trigger": {"body": {}}}

    with pytest.raises(TemplateError, match="'fetch', which has not run"):
        evaluate("{fetch.status_code} == 200", partial, KNOWN)
