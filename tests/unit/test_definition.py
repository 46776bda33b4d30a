"""Workflow definitions: YAML in, a checked Workflow out, every problem located."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
from stepstream.definition import Step, Workflow, parse_workflow
from stepstream.errors import Problem, WorkflowInvalidError

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
BUILT_INS = {"document_summary", "lead_qualification", "support_triage", "service_health_pipeline"}

VALID = dedent(
    """\
    name: health
    description: Check a service
    trigger:
      type: webhook
      path: /triggers/health
    steps:
      - id: start
        type: trigger
      - id: fetch
        type: http
        url: http://127.0.0.1:1/health
      - id: route
        type: condition
        condition: "{fetch.status_code} == 200"
        on_true: ok
        on_false: down
      - id: ok
        type: notify
        message: fine
      - id: down
        type: notify
        message: down
    """
)


def problems_of(text: str) -> list[Problem]:
    """The problems ``parse_workflow`` reports for ``text`` (it must refuse it)."""
    with pytest.raises(WorkflowInvalidError) as caught:
        parse_workflow(text)
    return caught.value.problems


def only(problems: list[Problem]) -> Problem:
    """The single problem of ``problems``."""
    assert len(problems) == 1, problems
    return problems[0]


def test_parse_workflow_valid_text_gives_steps_in_file_order() -> None:
    workflow = parse_workflow(VALID)

    assert isinstance(workflow, Workflow)
    assert workflow.name == "health"
    assert workflow.description == "Check a service"
    assert workflow.trigger == {"type": "webhook", "path": "/triggers/health"}
    assert workflow.step_ids == ("start", "fetch", "route", "ok", "down")
    types = [step.type for step in workflow.steps]
    assert types == ["trigger", "http", "condition", "notify", "notify"]
    assert workflow.yaml_content == VALID


def test_parse_workflow_step_keeps_config_and_start_line() -> None:
    route = parse_workflow(VALID).steps[2]

    assert isinstance(route, Step)
    assert route.line == 12
    assert route.config == {
        "id": "route",
        "type": "condition",
        "condition": "{fetch.status_code} == 200",
        "on_true": "ok",
        "on_false": "down",
    }


def test_workflow_index_of_known_and_unknown_step() -> None:
    workflow = parse_workflow(VALID)

    assert workflow.index_of("ok") == 3
    with pytest.raises(KeyError):
        workflow.index_of("nope")


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [("", "/triggers/health"), ("trigger: {path: hooks/h}", "/hooks/h")],
)
def test_workflow_trigger_path_defaults_and_gains_leading_slash(
    trigger: str, expected: str
) -> None:
    text = f"name: health\n{trigger}\nsteps:\n  - id: start\n    type: trigger\n"

    assert parse_workflow(text).trigger_path == expected


def test_parse_workflow_invalid_yaml_reports_line_and_column() -> None:
    problem = only(problems_of("name: x\nsteps:\n  - id: a\n    type: [http\n"))

    assert problem.message.startswith("invalid YAML")
    assert problem.line == 5
    assert problem.column == 1


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_parse_workflow_not_a_mapping_refused_at_line_one(text: str) -> None:
    problem = only(problems_of(text))

    assert problem.message == "a workflow must be a YAML mapping"
    assert (problem.line, problem.column) == (1, 1)


def test_parse_workflow_missing_name_and_steps_reports_both() -> None:
    problems = problems_of("description: nothing else\n")

    assert {problem.field for problem in problems} == {"name", "steps"}


def test_parse_workflow_unknown_node_type_located_at_step() -> None:
    text = "name: w\nsteps:\n  - id: start\n    type: trigger\n  - id: mail\n    type: email\n"

    problem = only(problems_of(text))

    assert "unknown node type 'email'" in problem.message
    assert "http" in problem.message
    assert (problem.line, problem.column) == (5, 5)
    assert (problem.step_id, problem.field) == ("mail", "type")


@pytest.mark.parametrize("node_type", ["[http]", "{kind: http}"])
def test_parse_workflow_unhashable_node_type_reported_not_raised(node_type: str) -> None:
    problem = only(problems_of(f"name: w\nsteps:\n  - id: a\n    type: {node_type}\n"))

    assert problem.field == "type"
    assert problem.step_id == "a"


def test_parse_workflow_duplicate_step_id_located_at_second_step() -> None:
    text = "name: w\nsteps:\n  - id: a\n    type: trigger\n  - id: a\n    type: notify\n"

    problem = only(problems_of(text))

    assert problem.message == "duplicate step id"
    assert (problem.line, problem.column) == (5, 5)
    assert (problem.step_id, problem.field) == ("a", "id")


@pytest.mark.parametrize(
    "step", ["{type: trigger}", "{id: '', type: trigger}", "{id: 5, type: trigger}"]
)
def test_parse_workflow_step_without_string_id_refused(step: str) -> None:
    problem = only(problems_of(f"name: w\nsteps:\n  - {step}\n"))

    assert problem.message == "step 1 needs an 'id'"
    assert problem.field == "id"
    assert problem.line == 3


def test_parse_workflow_step_not_a_mapping_refused() -> None:
    problem = only(problems_of("name: w\nsteps:\n  - just-a-string\n"))

    assert problem.message == "step 1 must be a mapping"
    assert (problem.line, problem.column) == (3, 5)


def test_parse_workflow_unknown_jump_target_names_step_and_field() -> None:
    text = VALID.replace("on_false: down", "on_false: dwon")

    problem = only(problems_of(text))

    assert problem.message == "jumps to unknown step 'dwon'"
    assert (problem.step_id, problem.field, problem.line) == ("route", "on_false", 12)


def test_parse_workflow_unhashable_jump_target_reported_not_raised() -> None:
    problem = only(problems_of(VALID.replace("on_true: ok", "on_true: [ok]")))

    assert (problem.step_id, problem.field) == ("route", "on_true")


@pytest.mark.parametrize("target", ["fetch", "route"])
def test_parse_workflow_backward_or_self_jump_refused(target: str) -> None:
    problem = only(problems_of(VALID.replace("on_false: down", f"on_false: {target}")))

    assert f"jumps back to '{target}'" in problem.message
    assert (problem.step_id, problem.field) == ("route", "on_false")


def test_parse_workflow_many_problems_reported_together() -> None:
    text = dedent(
        """\
        steps:
          - id: a
            type: trigger
          - id: a
            type: http
          - id: b
            type: sms
          - id: c
            type: condition
            on_true: nowhere
        trigger: [not, a, mapping]
        """
    )

    problems = problems_of(text)

    assert [(p.step_id, p.field) for p in problems] == [
        (None, "name"),
        ("a", "id"),
        ("b", "type"),
        ("c", "on_true"),
        (None, "trigger"),
    ]
    assert [p.line for p in problems[1:4]] == [4, 6, 8]


def test_workflow_invalid_error_text_joins_located_problems() -> None:
    error = WorkflowInvalidError(
        [Problem("bad type", 5, 5, "mail", "type"), Problem("a workflow needs a 'name'")]
    )

    assert str(error) == "5:5: step 'mail': type: bad type; a workflow needs a 'name'"


def test_problem_as_dict_omits_unknown_location() -> None:
    assert Problem("jumps back", 12, None, "route", "on_false").as_dict() == {
        "message": "jumps back",
        "line": 12,
        "step_id": "route",
        "field": "on_false",
    }


def test_built_in_workflows_are_the_four_and_all_parse() -> None:
    files = sorted(WORKFLOWS.glob("*.yaml"))

    assert {path.stem for path in files} == BUILT_INS
    for path in files:
        workflow = parse_workflow(path.read_text(encoding="utf-8"))
        assert workflow.name == path.stem
        assert workflow.trigger_path == f"/triggers/{path.stem}"
