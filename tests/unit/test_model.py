"""The workflow format's one model: strict types, no unknown keys, a JSON Schema for editors."""

from __future__ import annotations

import json
from textwrap import dedent, indent
from typing import Any

import pytest
from pydantic import ValidationError

from stepstream.definition import check_workflow
from stepstream.errors import Problem
from stepstream.model import NODE_TYPES, WorkflowModel, json_schema

START = "- id: start\n  type: trigger\n"


def text_with(step: str, top: str = "") -> str:
    """A workflow whose second step is ``step`` (YAML), after a trigger step."""
    return f"name: w\n{top}steps:\n" + indent(START + dedent(step), "  ")


def only_error(text: str) -> Problem:
    """The single error ``check_workflow`` reports for ``text``."""
    workflow, problems, _warnings = check_workflow(text)
    assert workflow is None
    assert len(problems) == 1, problems
    return problems[0]


def test_model_valid_mapping_validates_with_defaults() -> None:
    data = {"name": "w", "steps": [{"id": "ask", "type": "llm", "prompt": "hi"}]}

    model = WorkflowModel.model_validate(data)

    [step] = model.steps
    assert step.type == "llm"
    assert (step.max_tokens, step.model) == (1024, "claude-sonnet-4-6")
    assert model.max_iterations == 10


def test_model_number_as_string_refused_by_strict_types() -> None:
    data = {"name": "w", "steps": [{"id": "ask", "type": "llm", "prompt": "hi", "max_tokens": "7"}]}

    with pytest.raises(ValidationError) as caught:
        WorkflowModel.model_validate(data)

    [error] = caught.value.errors()
    assert error["type"] == "int_type"
    assert error["loc"] == ("steps", 0, "llm", "max_tokens")


@pytest.mark.parametrize(
    ("step", "field", "hint"),
    [
        ("- id: ask\n  type: llm\n  prompt: hi\n  max_token: 5\n", "max_token", "max_tokens"),
        ("- id: fetch\n  type: http\n  url: http://h\n  header: {}\n", "header", "headers"),
        (
            "- id: gate\n  type: condition\n  condition: 'true'\n  on_ture: x\n",
            "on_ture",
            "on_true",
        ),
    ],
)
def test_check_unknown_step_key_suggests_the_close_one(step: str, field: str, hint: str) -> None:
    problem = only_error(text_with(step))

    assert problem.message == f"unknown key '{field}'; did you mean '{hint}'?"
    assert problem.field == field
    assert problem.step_id in {"ask", "fetch", "gate"}
    assert problem.line == 8


def test_check_unknown_top_level_key_suggests_the_close_one() -> None:
    problem = only_error(text_with("", top="descriptoin: checks things\n"))

    assert problem.message == "unknown key 'descriptoin'; did you mean 'description'?"
    assert (problem.line, problem.step_id) == (2, None)


def test_check_unknown_key_with_nothing_close_has_no_hint() -> None:
    problem = only_error(text_with("- id: tell\n  type: notify\n  zzzz: 1\n"))

    assert problem.message == "unknown key 'zzzz'"


def test_check_misspelt_required_key_reports_missing_and_unknown() -> None:
    _workflow, problems, _warnings = check_workflow(
        text_with("- id: ask\n  type: llm\n  promt: hi\n")
    )

    assert sorted(problem.message for problem in problems) == [
        "missing required key 'prompt'",
        "unknown key 'promt'; did you mean 'prompt'?",
    ]
    assert {problem.step_id for problem in problems} == {"ask"}


@pytest.mark.parametrize(("step", "key"), [("type: http", "url"), ("type: llm", "prompt")])
def test_check_missing_required_key_names_it_at_the_step(step: str, key: str) -> None:
    problem = only_error(text_with(f"- id: s\n  {step}\n"))

    assert problem.message == f"missing required key '{key}'"
    assert (problem.step_id, problem.field, problem.line) == ("s", key, 5)


def test_check_missing_name_reported_for_the_workflow() -> None:
    problem = only_error("steps:\n  - id: start\n    type: trigger\n")

    assert (problem.message, problem.field) == ("missing required key 'name'", "name")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("max_tokens", '"7"', "input should be a valid integer"),
        ("max_tokens", "true", "input should be a valid integer"),
        ("max_tokens", "0", "input should be greater than or equal to 1"),
        ("temperature", "2", "input should be less than or equal to 1"),
        ("system", "[a]", "input should be a valid string"),
    ],
)
def test_check_wrong_value_type_or_range_reported_at_the_value(
    key: str, value: str, message: str
) -> None:
    problem = only_error(text_with(f"- id: ask\n  type: llm\n  prompt: hi\n  {key}: {value}\n"))

    assert problem.message == message
    assert (problem.step_id, problem.field) == ("ask", key)
    assert (problem.line, problem.column) == (8, len(key) + 7)


def test_check_integer_accepted_where_a_float_is_expected() -> None:
    workflow, problems, _ = check_workflow(
        text_with("- id: fetch\n  type: http\n  url: http://h\n  timeout: 5\n")
    )

    assert problems == []
    assert workflow is not None
    assert workflow.steps[1].config["timeout"] == 5


def test_check_unknown_node_type_lists_the_known_ones() -> None:
    problem = only_error(text_with("- id: mail\n  type: email\n"))

    assert problem.message == (
        "unknown node type 'email' (known: trigger, http, llm, condition, notify)"
    )
    assert (problem.step_id, problem.field, problem.line, problem.column) == ("mail", "type", 6, 11)


def test_check_step_without_type_asks_for_one() -> None:
    problem = only_error(text_with("- id: fetch\n  url: http://h\n"))

    assert problem.message == (
        "missing required key 'type' (one of: trigger, http, llm, condition, notify)"
    )
    assert (problem.step_id, problem.field) == ("fetch", "type")


@pytest.mark.parametrize("method", ["FETCH", "get it", "CONNECT"])
def test_check_unknown_http_method_refused_naming_the_known(method: str) -> None:
    problem = only_error(
        text_with(f"- id: fetch\n  type: http\n  url: http://h\n  method: {method}\n")
    )

    assert f"unknown HTTP method '{method}'" in problem.message
    assert "GET, HEAD, OPTIONS, PATCH, POST, PUT" in problem.message
    assert (problem.step_id, problem.field) == ("fetch", "method")


def test_check_http_method_in_lower_case_accepted() -> None:
    _workflow, problems, _ = check_workflow(
        text_with("- id: fetch\n  type: http\n  url: http://h\n  method: post\n")
    )

    assert problems == []


def test_check_unknown_notify_channel_lists_the_channels() -> None:
    problem = only_error(text_with("- id: tell\n  type: notify\n  channel: sms\n"))

    assert problem.message == "input should be 'log', 'email', 'slack' or 'webhook'"
    assert problem.field == "channel"


@pytest.mark.parametrize("step_id", ["2fast", "has space", "a.b", ""])
def test_check_step_id_that_templates_cannot_name_refused(step_id: str) -> None:
    problem = only_error(text_with(f"- id: '{step_id}'\n  type: notify\n"))

    assert problem.message.startswith("string should match pattern")
    assert problem.field == "id"


def test_check_workflow_max_iterations_bounded() -> None:
    problem = only_error(text_with("", top="max_iterations: 0\n"))

    assert problem.message == "input should be greater than or equal to 1"
    assert problem.field == "max_iterations"


def schema_steps(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a workflow's ``steps`` items."""
    return schema["properties"]["steps"]["items"]


def test_json_schema_discriminates_the_five_step_types() -> None:
    schema = json_schema()

    mapping = schema_steps(schema)["discriminator"]["mapping"]
    assert set(mapping) == set(NODE_TYPES) == {"trigger", "http", "llm", "condition", "notify"}
    assert schema_steps(schema)["discriminator"]["propertyName"] == "type"
    for node_type, ref in mapping.items():
        definition = schema["$defs"][ref.rsplit("/", 1)[1]]
        assert definition["properties"]["type"]["const"] == node_type


def test_json_schema_forbids_unknown_keys_everywhere() -> None:
    schema = json_schema()

    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        assert definition.get("additionalProperties") is False, name


def test_json_schema_is_a_titled_2020_12_document_that_round_trips_as_json() -> None:
    schema = json_schema()

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Stepstream workflow"
    assert set(schema["required"]) == {"name", "steps"}
    assert json.loads(json.dumps(schema)) == schema


@pytest.mark.parametrize("path", ["/hooks/x", "/triggers/a/b", "/triggers/", "triggers/a b"])
def test_check_trigger_path_outside_one_triggers_segment_refused(path: str) -> None:
    problem = only_error(text_with("", top=f"trigger:\n  path: '{path}'\n"))

    assert problem.message.startswith("string should match pattern")
    assert (problem.field, problem.line) == ("path", 3)


# -- failure keys: retry, timeout, on_error, accept_status ---------------------------

FETCH = "- id: fetch\n  type: http\n  url: http://h\n"


def with_keys(keys: str, step: str = FETCH, top: str = "") -> str:
    """A workflow whose second step is ``step`` plus the YAML ``keys`` (a mapping's lines)."""
    return text_with(step + indent(dedent(keys), "  "), top)


def problems_with(keys: str, step: str = FETCH) -> list[Problem]:
    """The errors of ``with_keys(keys, step)``."""
    workflow, problems, _warnings = check_workflow(with_keys(keys, step))
    assert workflow is None
    return problems


def test_check_every_failure_key_accepted_on_an_http_step() -> None:
    keys = """\
        timeout: 30
        retry:
          attempts: 5
          backoff: {initial: 0.5, multiplier: 3, max: 60}
          jitter: false
          on: [network, timeout, http_status, 404, 4xx, 5xx]
        accept_status: [200, 404, 3xx]
        on_error: continue
        """

    workflow, problems, warnings = check_workflow(with_keys(keys))

    assert (problems, warnings) == ([], [])
    assert workflow is not None
    config = workflow.steps[1].config
    assert config["retry"]["on"] == ["network", "timeout", "http_status", 404, "4xx", "5xx"]
    assert config["accept_status"] == [200, 404, "3xx"]


@pytest.mark.parametrize(
    "step",
    [
        "- id: gate\n  type: condition\n  condition: 'true'\n",
        "- id: ask\n  type: llm\n  prompt: hi\n",
        "- id: tell\n  type: notify\n  channel: webhook\n  url: http://h\n",
    ],
)
def test_check_retry_timeout_and_on_error_accepted_on_every_step_type(step: str) -> None:
    keys = "timeout: 5\nretry: {attempts: 2}\non_error: {goto: start}\n"

    _workflow, problems, _ = check_workflow(with_keys(keys, step))

    assert problems == []


def test_check_accept_status_any_accepted() -> None:
    _workflow, problems, _ = check_workflow(with_keys("accept_status: any\n"))

    assert problems == []


def test_check_workflow_timeout_accepted_and_kept() -> None:
    workflow, problems, _ = check_workflow(text_with("", top="timeout: 3600\n"))

    assert problems == []
    assert workflow is not None and workflow.timeout == 3600


@pytest.mark.parametrize(
    ("on", "message"),
    [
        ("[netwrok]", "unknown error kind 'netwrok' (known: api, config, crash, expression, "
                      "http_status, network, template, timeout; or an HTTP status, or a class "
                      "like '5xx')"),
        ("[700]", "on: 700 is not an HTTP status (100-599)"),
        ("[99]", "on: 99 is not an HTTP status (100-599)"),
        ("['6xx']", "'6xx' is neither an HTTP status (write numbers unquoted: 503) nor a "
                    "class of them ('1xx' to '5xx')"),
        ("['503']", "'503' is neither an HTTP status"),
    ],
    ids=["unknown-kind", "status-700", "status-99", "class-6xx", "quoted-status"],
)
def test_check_retry_on_refuses_what_is_no_kind_status_or_class(on: str, message: str) -> None:
    [problem] = problems_with(f"retry:\n  on: {on}\n")

    assert problem.message.startswith(message)
    assert (problem.line, problem.step_id, problem.field) == (9, "fetch", "on")


@pytest.mark.parametrize(
    ("keys", "wrong", "others"),
    [
        ("retry: {on: [600, true, bogus]}\n", "True", ("600", "'bogus'")),
        ("retry: {on: [600, 503.5, bogus]}\n", "503.5", ("600", "'bogus'")),
        ("accept_status: [600, true, '6xx']\n", "True", ("600", "'6xx'")),
    ],
    ids=["on-bool", "on-float", "accept-bool"],
)
def test_check_an_entry_of_a_wrong_type_hides_no_other_bad_entry(
    keys: str, wrong: str, others: tuple[str, ...]
) -> None:
    [problem] = problems_with(keys)

    assert f"{wrong} is not an HTTP status" in problem.message
    assert all(other in problem.message for other in others), problem.message
    assert "valid string" not in problem.message and "valid integer" not in problem.message


def test_check_retry_on_names_every_bad_entry_in_one_problem() -> None:
    [problem] = problems_with("retry:\n  on: [netwrok, 503, '6xx', 700, timout]\n")

    assert "'netwrok'" in problem.message and "'timout'" in problem.message
    assert "'6xx'" in problem.message and "700 is not an HTTP status" in problem.message
    assert problem.message.count("unknown error kind") == 2
    assert problem.message.count("is neither") == problem.message.count("is not an") == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[99, 200]", "accept_status: 99 is not an HTTP status (100-599)"),
        ("[200, 700]", "accept_status: 700 is not an HTTP status (100-599)"),
        ("['6xx']", "accept_status: '6xx' is neither a status nor a class like '5xx'"),
        ("['200']", "accept_status: '200' is neither a status nor a class like '5xx'"),
        ("[any]", "accept_status: 'any' is neither a status nor a class like '5xx'"),
    ],
)
def test_check_accept_status_list_refuses_what_is_no_status_or_class(
    value: str, message: str
) -> None:
    [problem] = problems_with(f"accept_status: {value}\n")

    assert problem.message == message
    assert (problem.line, problem.step_id, problem.field) == (8, "fetch", "accept_status")



def test_check_accept_status_empty_list_refused_at_its_key() -> None:
    """An empty list would accept no answer at all: refused, rather than read as the default."""
    [problem] = problems_with("accept_status: []\n")

    assert problem.message.startswith("value should have at least 1 item")
    assert (problem.line, problem.step_id, problem.field) == (8, "fetch", "accept_status")


def test_check_on_error_goto_null_names_no_step_called_none() -> None:
    """``goto: null`` is a wrong value at its key, not a jump to a step named 'None'."""
    problems = problems_with("on_error: {goto: null}\n")

    # One error, at the value, rather than another from the union's word form.
    assert {p.field for p in problems} == {"goto"}
    assert not [p for p in problems if "unknown step" in p.message], problems


@pytest.mark.parametrize(
    ("keys", "fields", "line"),
    [
        ("accept_status: all\n", {"accept_status"}, 8),
        ("accept_status: '200'\n", {"accept_status"}, 8),
        ("on_error: retry\n", {"on_error"}, 8),
        ("on_error: {goto: start, then: x}\n", {"then"}, 8),
        ("retry:\n  on: [true]\n", {"on"}, 9),
    ],
    ids=["accept-word", "accept-text", "on-error-word", "on-error-extra-key", "retry-on-bool"],
)
def test_check_value_of_no_union_member_is_located_at_its_key(
    keys: str, fields: set[str], line: int
) -> None:
    problems = problems_with(keys)

    assert {(p.line, p.step_id) for p in problems} == {(line, "fetch")}
    assert {p.field for p in problems} == fields


@pytest.mark.parametrize(
    ("keys", "field", "line", "message"),
    [
        ("retry: {attempts: 0}\n", "attempts", 8, "input should be greater than or equal to 1"),
        ("retry: {attempts: 101}\n", "attempts", 8, "input should be less than or equal to 100"),
        ("retry: {attempts: '3'}\n", "attempts", 8, "input should be a valid integer"),
        ("retry:\n  backoff: {multiplier: 0.5}\n", "multiplier", 9,
         "input should be greater than or equal to 1"),
        ("retry:\n  backoff: {initial: -1}\n", "initial", 9,
         "input should be greater than or equal to 0"),
        ("retry: {jitter: maybe}\n", "jitter", 8, "input should be a valid boolean"),
        ("retry: [3]\n", "retry", 8, "input should be a valid dictionary"),
        ("timeout: 0\n", "timeout", 8, "input should be greater than 0"),
        ("timeout: -5\n", "timeout", 8, "input should be greater than 0"),
        ("on_error: {goto: '2nd'}\n", "goto", 8, "string should match pattern"),
    ],
)
def test_check_failure_key_out_of_range_reported_at_its_key(
    keys: str, field: str, line: int, message: str
) -> None:
    problems = problems_with(keys)

    located = [p for p in problems if p.field == field]
    assert located, problems
    assert located[0].message.startswith(message)
    assert (located[0].line, located[0].step_id) == (line, "fetch")


def test_check_workflow_timeout_must_be_positive() -> None:
    problem = only_error(text_with("", top="timeout: 0\n"))

    assert problem.message == "input should be greater than 0"
    assert (problem.line, problem.step_id, problem.field) == (2, None, "timeout")


def test_check_unknown_key_in_retry_reported_in_the_step() -> None:
    problem = only_error(with_keys("retry:\n  attempt: 2\n"))

    assert problem.message.startswith("unknown key 'attempt'")
    assert (problem.line, problem.step_id, problem.field) == (9, "fetch", "attempt")


def test_check_accept_status_only_on_http_steps() -> None:
    problem = only_error(text_with("- id: tell\n  type: notify\n  accept_status: any\n"))

    assert problem.message == "unknown key 'accept_status'"
    assert (problem.step_id, problem.field) == ("tell", "accept_status")



@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ("retry:\n  attemps: 2\n", "unknown key 'attemps'; did you mean 'attempts'?"),
        ("retry:\n  backoff: {inital: 1}\n", "unknown key 'inital'; did you mean 'initial'?"),
        ("retry:\n  timeout: 5\n", "unknown key 'timeout'"),  # not "did you mean 'timeout'?"
    ],
    ids=["retry-key", "backoff-key", "step-key-in-retry"],
)
def test_check_unknown_key_in_a_nested_mapping_hints_from_that_mapping(
    keys: str, message: str
) -> None:
    problem = only_error(with_keys(keys))

    assert problem.message == message
