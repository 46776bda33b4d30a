"""The strict YAML loader: YAML 1.2 scalars, duplicate keys refused, bounded documents."""

from __future__ import annotations

from typing import Any

import pytest
from stepstream import _yaml
from stepstream.errors import Problem, WorkflowInvalidError


def load_data(text: str) -> Any:
    """The data of ``text``, which must load without problems."""
    data, _positions, duplicates = _yaml.load(text)
    assert duplicates == []
    return data


def refusal(text: str) -> Problem:
    """The single problem ``_yaml.load`` refuses ``text`` with."""
    with pytest.raises(WorkflowInvalidError) as caught:
        _yaml.load(text)
    [problem] = caught.value.problems
    return problem


def test_load_duplicate_key_reported_with_both_lines_and_last_value_kept_aside() -> None:
    data, _positions, duplicates = _yaml.load("name: a\nmax_iterations: 3\nname: b\n")

    [(problem, mapping_path)] = duplicates
    assert problem.message == (
        "duplicate key 'name' (first on line 1); keys must be unique in a mapping"
    )
    assert (problem.line, problem.column, problem.field) == (3, 1, "name")
    assert mapping_path == ()
    assert data["max_iterations"] == 3


def test_load_duplicate_key_in_nested_mapping_gives_that_mapping_path() -> None:
    text = "steps:\n  - id: a\n    type: notify\n    message: one\n    message: two\n"

    _data, _positions, duplicates = _yaml.load(text)

    [(problem, mapping_path)] = duplicates
    assert "first on line 4" in problem.message
    assert (problem.line, problem.column, problem.field) == (5, 5, "message")
    assert mapping_path == ("steps", 0)


def test_load_merge_key_overridden_by_explicit_key_is_legal() -> None:
    text = "base: &base {method: GET, timeout: 5}\nfetch:\n  <<: *base\n  method: POST\n"

    data, _positions, duplicates = _yaml.load(text)

    assert duplicates == []
    assert data["fetch"] == {"method": "POST", "timeout": 5}


def test_load_key_repeated_after_merge_override_still_a_duplicate() -> None:
    text = "base: &base {method: GET}\nfetch:\n  <<: *base\n  method: POST\n  method: PUT\n"

    _data, _positions, duplicates = _yaml.load(text)

    assert [problem.line for problem, _ in duplicates] == [5]


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "Yes", "NO", "y", "n", "On"])
def test_load_yaml_1_1_booleans_stay_strings(word: str) -> None:
    assert load_data(f"value: {word}\n") == {"value": word}


@pytest.mark.parametrize(
    ("scalar", "value"),
    [
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("", None),
        ("010", 10),
        ("0o17", 15),
        ("0x1f", 31),
        ("-12", -12),
        ("12345678901234567890", 12345678901234567890),
        ("2.5", 2.5),
        ("1e3", 1000.0),
        (".inf", float("inf")),
    ],
)
def test_load_core_schema_scalars_get_their_yaml_1_2_types(scalar: str, value: Any) -> None:
    loaded = load_data(f"value: {scalar}\n")["value"]

    assert loaded == value
    assert type(loaded) is type(value)


@pytest.mark.parametrize(
    "scalar", ["2024-01-02", "2024-01-02T10:00:00Z", "1:30", "12:30:00", "0b101", "1_000", "0o8"]
)
def test_load_dates_sexagesimals_and_other_1_1_forms_stay_strings(scalar: str) -> None:
    assert load_data(f"value: {scalar}\n") == {"value": scalar}


def test_load_positions_record_line_and_column_of_every_value_by_path() -> None:
    text = "name: w\nsteps:\n  - id: a\n    type: condition\n    on_true: b\n"

    _data, positions, _duplicates = _yaml.load(text)

    assert positions[("name",)] == (1, 7)
    assert positions[("steps", 0)] == (3, 5)
    assert positions[("steps", 0, "on_true")] == (5, 14)


def test_load_alias_bomb_refused_with_node_limit_in_message() -> None:
    # Nine levels of ten aliases each would expand to a billion values.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        aliases = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    text = "\n".join(lines) + "\n"

    problem = refusal(text)

    assert len(text) < 1000
    assert problem.message == f"the document expands to more than {_yaml.MAX_NODES} values"
    assert problem.line is not None


def test_load_self_referencing_alias_refused_not_recursed_forever() -> None:
    problem = refusal("loop: &loop [*loop]\n")

    assert str(_yaml.MAX_DEPTH) in problem.message


def test_load_nesting_at_depth_limit_accepted_and_one_deeper_refused() -> None:
    def nested(depth: int) -> str:
        return "value: " + "[" * depth + "]" * depth + "\n"

    deepest: list[Any] = []
    for _ in range(_yaml.MAX_DEPTH - 1):
        deepest = [deepest]

    assert load_data(nested(_yaml.MAX_DEPTH)) == {"value": deepest}
    problem = refusal(nested(_yaml.MAX_DEPTH + 1))

    assert problem.message == f"the document nests deeper than {_yaml.MAX_DEPTH} levels"
    assert problem.line == 1


def test_load_nesting_past_the_parser_recursion_refused_with_depth_limit() -> None:
    # Deep enough that PyYAML's recursive composer runs out of stack before the walk.
    problem = refusal("value: " + "[" * 600 + "]" * 600 + "\n")

    assert problem.line == 1

    assert problem.message == f"the document nests deeper than {_yaml.MAX_DEPTH} levels"


def test_load_oversized_document_refused_by_bytes_not_characters() -> None:
    # Two UTF-8 bytes per character: half the limit in characters is past it in bytes.
    text = "value: " + "é" * (_yaml.MAX_DOCUMENT_BYTES // 2)

    problem = refusal(text)

    assert len(text) < _yaml.MAX_DOCUMENT_BYTES
    assert problem.message == (
        f"the document is larger than the limit of {_yaml.MAX_DOCUMENT_BYTES // 1024} KiB"
    )
    assert (problem.line, problem.column) == (1, 1)


def test_load_document_just_under_size_limit_accepted() -> None:
    text = "value: " + "x" * (_yaml.MAX_DOCUMENT_BYTES - 20) + "\n"

    assert len(load_data(text)["value"]) == _yaml.MAX_DOCUMENT_BYTES - 20


def test_load_second_document_refused_at_its_start() -> None:
    problem = refusal("name: a\n---\nname: b\n")

    assert problem.message.startswith("invalid YAML")
    assert "another document" in problem.message
    assert problem.line == 2


def test_load_explicit_document_markers_around_one_document_accepted() -> None:
    assert load_data("---\nname: a\n...\n") == {"name": "a"}


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("name: x\nsteps:\n  - id: a\n    type: [http\n", 5, 1, "expected"),
        ("name: a: b\n", 1, 8, "mapping values are not allowed"),
        ("steps:\n  - a\n - b\n", 3, 2, "expected <block end>"),
        ("name: 'open\n", 2, 1, "unexpected end of stream"),
    ],
)
def test_load_syntax_error_located_at_line_and_column(
    text: str, line: int, column: int, words: str
) -> None:
    problem = refusal(text)

    assert problem.message.startswith("invalid YAML: ")
    assert words in problem.message
    assert (problem.line, problem.column) == (line, column)


@pytest.mark.parametrize(
    "text",
    [
        "value: !!python/object/apply:os.system ['echo hi']\n",
        "value: !!python/name:os.system\n",
        "value: !custom thing\n",
    ],
)
def test_load_python_and_unknown_tags_refused(text: str) -> None:
    problem = refusal(text)

    assert "could not determine a constructor" in problem.message


def test_load_control_character_refused_as_problem_not_raised() -> None:
    problem = refusal("name: a\x07b\n")

    assert problem.message.startswith("invalid YAML")


def test_load_empty_text_gives_no_data_and_no_problems() -> None:
    assert _yaml.load("") == (None, {}, [])
    assert _yaml.load("# only a comment\n") == (None, {}, [])
