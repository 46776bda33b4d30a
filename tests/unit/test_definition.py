"""Workflow definitions: YAML in, a checked Workflow out, every problem located."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent, indent

import pytest

from stepstream.definition import Step, Workflow, check_workflow, parse_workflow
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
    [("", "/triggers/health"), ("trigger: {path: triggers/h}", "/triggers/h")],
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
    assert (problem.line, problem.column) == (6, 11)
    assert (problem.step_id, problem.field) == ("mail", "type")


@pytest.mark.parametrize("node_type", ["[http]", "{kind: http}"])
def test_parse_workflow_unhashable_node_type_reported_not_raised(node_type: str) -> None:
    problem = only(problems_of(f"name: w\nsteps:\n  - id: a\n    type: {node_type}\n"))

    assert problem.field == "type"
    assert problem.step_id == "a"


def test_parse_workflow_duplicate_step_id_located_at_second_step() -> None:
    text = "name: w\nsteps:\n  - id: a\n    type: trigger\n  - id: a\n    type: notify\n"

    problem = only(problems_of(text))

    assert problem.message == "duplicate step id 'a' (first on line 3); step ids must be unique"
    assert (problem.line, problem.column) == (5, 9)
    assert (problem.step_id, problem.field) == ("a", "id")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{type: trigger}", "missing required key 'id'"),
        ("{id: '', type: trigger}", "string should match pattern '^[A-Za-z_][A-Za-z0-9_-]*$'"),
        ("{id: 5, type: trigger}", "input should be a valid string"),
    ],
)
def test_parse_workflow_step_without_string_id_refused(step: str, message: str) -> None:
    problem = only(problems_of(f"name: w\nsteps:\n  - {step}\n"))

    assert problem.message == message
    assert problem.field == "id"
    assert problem.line == 3


def test_parse_workflow_step_not_a_mapping_refused() -> None:
    problem = only(problems_of("name: w\nsteps:\n  - just-a-string\n"))

    assert problem.message.startswith("input should be a valid dictionary")
    assert (problem.line, problem.column) == (3, 5)


def test_parse_workflow_unknown_jump_target_names_step_and_field() -> None:
    text = VALID.replace("on_false: down", "on_false: dwon")

    problem = only(problems_of(text))

    assert problem.message == "jumps to unknown step 'dwon' (steps: start, fetch, route, ok, down)"
    assert (problem.step_id, problem.field, problem.line) == ("route", "on_false", 16)


@pytest.mark.parametrize("target", ["[ok]", "{to: ok}"])
def test_parse_workflow_unhashable_jump_target_reported_not_raised(target: str) -> None:
    problems = problems_of(VALID.replace("on_true: ok", f"on_true: {target}"))

    assert problems
    assert {(p.step_id, p.field, p.line) for p in problems} == {("route", "on_true", 15)}
    assert "input should be a valid string" in [p.message for p in problems]


@pytest.mark.parametrize("target", ["fetch", "route"])
def test_parse_workflow_backward_or_self_jump_makes_a_loop(target: str) -> None:
    workflow, problems, warnings = check_workflow(
        VALID.replace("on_false: down", f"on_false: {target}")
    )

    assert (problems, warnings) == ([], [])
    assert workflow is not None
    assert workflow.steps[2].config["on_false"] == target


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

    assert sorted((p.line, p.step_id, p.field) for p in problems) == [
        (1, None, "name"),
        (4, "a", "id"),
        (4, "a", "url"),
        (7, "b", "type"),
        (8, "c", "condition"),
        (10, "c", "on_true"),
        (11, None, "trigger"),
    ]


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


# What ``check_workflow`` reports for each built-in workflow: no errors, and no
# warnings (a skip warning would be the only acceptable kind).
BUILT_IN_WARNINGS: dict[str, list[tuple[str, str]]] = {name: [] for name in BUILT_INS}


@pytest.mark.parametrize("name", sorted(BUILT_INS))
def test_check_workflow_built_in_reports_nothing(name: str) -> None:
    text = (WORKFLOWS / f"{name}.yaml").read_text(encoding="utf-8")

    workflow, problems, warnings = check_workflow(text)

    assert problems == []
    assert [(w.step_id, w.field) for w in warnings] == BUILT_IN_WARNINGS[name]
    assert workflow is not None
    assert workflow.warnings == tuple(warnings)


def steps_text(steps: str, top: str = "") -> str:
    """A workflow named ``w`` with the given YAML ``steps`` list."""
    return f"name: w\n{top}steps:\n" + indent(dedent(steps), "  ")


def test_check_workflow_reports_every_kind_of_problem_at_once() -> None:
    text = steps_text(
        """\
        - id: start
          type: trigger
        - id: ask
          type: llm
          promt: hi
        - id: tell
          type: notify
          message: "{nobody.x}"
        - id: gate
          type: condition
          condition: "{trigger.body.n} >"
        """,
        top="name: again\n",
    )

    workflow, problems, warnings = check_workflow(text)

    assert workflow is None
    assert warnings == []
    assert sorted((p.line, p.step_id, p.field) for p in problems) == [
        (2, None, "name"),
        (6, "ask", "prompt"),
        (8, "ask", "promt"),
        (11, "tell", "message"),
        (14, "gate", "condition"),
    ]


def test_check_workflow_duplicate_key_in_a_step_names_the_step() -> None:
    text = steps_text("- id: tell\n  type: notify\n  message: one\n  message: two\n")

    problem = only(check_workflow(text)[1])

    assert problem.message == (
        "duplicate key 'message' (first on line 5); keys must be unique in a mapping"
    )
    assert (problem.line, problem.step_id, problem.field) == (6, "tell", "message")


MISSPELT_STEP = """\
- id: start
  type: trigger
- id: fetch
  type: http
  url: "http://api.test/users/{trigger.body.id}"
- id: tell
  type: notify
  message: "Hi {fecth.body.name}"
"""


def test_check_workflow_template_naming_no_step_lists_the_known_ids() -> None:
    problem = only(check_workflow(steps_text(MISSPELT_STEP))[1])

    assert problem.message == (
        "{fecth.body.name} names no step 'fecth' (known: trigger, start, fetch, tell); "
        "write \\{ for a literal brace"
    )
    assert (problem.line, problem.step_id, problem.field) == (10, "tell", "message")


def test_check_workflow_condition_naming_no_step_refused_at_registration() -> None:
    text = steps_text('- id: gate\n  type: condition\n  condition: "{fetsh.status_code} == 200"\n')

    problem = only(check_workflow(text)[1])

    assert "names no step 'fetsh'" in problem.message
    assert (problem.step_id, problem.field) == ("gate", "condition")


def test_check_workflow_escaped_brace_is_no_reference() -> None:
    text = steps_text(
        """\
        - id: tell
          type: notify
          message: 'literal \\{nobody.x} and {"json": true}'
        """
    )

    workflow, problems, warnings = check_workflow(text)

    assert (problems, warnings) == ([], [])
    assert workflow is not None


@pytest.mark.parametrize(
    ("steps", "reader", "source"),
    [
        (
            "- id: tell\n  type: notify\n  message: '{fetch.body}'\n"
            "- id: fetch\n  type: http\n  url: http://h\n",
            "tell",
            "fetch",
        ),
        ("- id: tell\n  type: notify\n  message: 'again {tell.message}'\n", "tell", "tell"),
    ],
    ids=["later-step", "itself-without-loop"],
)
def test_check_workflow_reading_a_step_that_never_ran_before_is_an_error(
    steps: str, reader: str, source: str
) -> None:
    problem = only(check_workflow(steps_text(steps))[1])

    assert problem.message.endswith(
        f"reads step '{source}', which can never have run before this step"
    )
    assert (problem.step_id, problem.field) == (reader, "message")


LOOP = """\
- id: start
  type: trigger
- id: count
  type: http
  url: "http://api.test/count?after={count.body.n ?? 0}"
- id: check
  type: condition
  condition: "{count.body.n} < 3"
  on_true: count
- id: report
  type: notify
  message: "counted to {count.body.n}"
"""


def test_check_workflow_loop_reading_its_own_previous_iteration_is_fine() -> None:
    workflow, problems, warnings = check_workflow(steps_text(LOOP))

    assert (problems, warnings) == ([], [])
    assert workflow is not None
    assert workflow.step_ids == ("start", "count", "check", "report")


def test_check_workflow_max_iterations_from_workflow_or_step() -> None:
    text = steps_text(
        LOOP.replace("  type: condition\n", "  type: condition\n  max_iterations: 3\n"),
        top="max_iterations: 5\n",
    )

    workflow = parse_workflow(text)

    assert [step.max_iterations for step in workflow.steps] == [5, 5, 3, 5]


def test_check_workflow_unreachable_step_is_a_warning_not_an_error() -> None:
    text = steps_text(
        """\
        - id: gate
          type: condition
          condition: "{trigger.body.go}"
          on_true: done
          on_false: done
        - id: orphan
          type: notify
          message: never
        - id: done
          type: notify
          message: done
        """
    )

    workflow, problems, warnings = check_workflow(text)

    assert problems == []
    assert workflow is not None
    warning = only(warnings)
    assert warning.message == (
        "step 'orphan' can never run: no path from the first step leads to it"
    )
    assert (warning.step_id, warning.field, warning.line) == ("orphan", None, 8)


BRANCHES = """\
- id: is_member
  type: condition
  condition: "{trigger.body.member_id} > 0"
  on_true: lookup
  on_false: guest
- id: lookup
  type: notify
  message: member
- id: guest
  type: notify
  message: guest
- id: receipt
  type: notify
  message: "Thanks {RECEIPT}"
"""


def test_check_workflow_read_of_skippable_step_is_a_warning() -> None:
    text = steps_text(BRANCHES.replace("{RECEIPT}", "{lookup.message}"))

    workflow, problems, warnings = check_workflow(text)

    assert problems == []
    assert workflow is not None
    warning = only(warnings)
    assert warning.message.startswith(
        "{lookup.message} reads step 'lookup', which a branch may skip"
    )
    assert "?? value" in warning.message
    assert (warning.step_id, warning.field) == ("receipt", "message")


def test_check_workflow_read_of_skippable_step_with_default_is_silent() -> None:
    text = steps_text(BRANCHES.replace("{RECEIPT}", '{lookup.message ?? \\"friend\\"}'))

    workflow, problems, warnings = check_workflow(text)

    assert (problems, warnings) == ([], [])
    assert workflow is not None


@pytest.mark.parametrize(
    "condition", ["{trigger.body.n} >", "{trigger.body.n} = 1", "((true)", "and true", "   "]
)
def test_check_workflow_condition_syntax_error_refused_at_registration(condition: str) -> None:
    text = steps_text(f'- id: gate\n  type: condition\n  condition: "{condition}"\n')

    problem = only(check_workflow(text)[1])

    assert problem.message.startswith("the condition is not a valid expression: ")
    assert (problem.step_id, problem.field, problem.line) == ("gate", "condition", 5)


@pytest.mark.parametrize(
    ("step", "key", "line"),
    [
        ("- id: ask\n  type: llm\n  prompt: hi\n  output_key: answer\n", "output_key", 6),
        ("- id: start\n  type: trigger\n  path: /hooks/x\n", "path", 5),
    ],
)
def test_check_workflow_key_of_the_original_format_warns_it_has_no_effect(
    step: str, key: str, line: int
) -> None:
    workflow, problems, warnings = check_workflow(steps_text(step))

    assert problems == []
    assert workflow is not None
    warning = only(warnings)
    assert warning.message == f"'{key}' is accepted for the original format but has no effect"
    assert (warning.field, warning.line) == (key, line)


def test_parse_workflow_keeps_warnings_on_the_workflow() -> None:
    text = steps_text("- id: ask\n  type: llm\n  prompt: hi\n  output_key: answer\n")

    workflow = parse_workflow(text)

    assert [w.field for w in workflow.warnings] == ["output_key"]


ORIGINAL_LEAD_QUALIFICATION = """name: lead_qualification
trigger:
  type: webhook
  path: /triggers/lead_qualification
steps:
  - id: qualify
    type: llm
    prompt: "Qualify this lead as JSON with score and summary: {trigger.body}"
  - id: check_qualified
    type: condition
    condition: "{qualify.score} >= 7"
    on_true: notify_sales
    on_false: send_nurture
  - id: notify_sales
    type: notify
    message: "score {qualify.score}"
  - id: send_nurture
    type: notify
    message: "thanks"
"""


def test_check_workflow_original_lead_qualification_points_at_the_llm_output_mistake() -> None:
    """The original's {qualify.score} names no llm output; the error says where it really is."""
    _workflow, errors, _warnings = check_workflow(ORIGINAL_LEAD_QUALIFICATION)

    assert [(e.step_id, e.field, e.line) for e in errors] == [
        ("check_qualified", "condition", 11), ("notify_sales", "message", 16)]
    assert "an llm step's output has no 'score'" in errors[0].message
    assert "{qualify.parsed.score}" in errors[0].message


def test_check_workflow_reference_to_a_real_output_key_is_accepted() -> None:
    """Every top-level output key of every node type may be read."""
    text = ORIGINAL_LEAD_QUALIFICATION.replace("{qualify.score}", "{qualify.parsed.score}")

    _workflow, errors, _warnings = check_workflow(text)

    assert errors == []


# -- on_error routes ------------------------------------------------------------------

RECOVERY = """\
- id: start
  type: trigger
- id: fetch
  type: http
  url: http://api.test/data
  on_error: {goto: recover}
- id: done
  type: condition
  condition: "true"
  on_true: end
  on_false: end
- id: recover
  type: notify
  message: "{fetch.error.message} ({fetch.error.kind}, {fetch.status_code})"
- id: end
  type: notify
  message: end
"""


def test_check_workflow_step_reached_only_through_on_error_goto_is_not_unreachable() -> None:
    workflow, problems, warnings = check_workflow(steps_text(RECOVERY))

    assert (problems, warnings) == ([], [])
    assert workflow is not None


def test_check_workflow_same_step_without_the_goto_is_unreachable() -> None:
    text = steps_text(
        RECOVERY.replace("  on_error: {goto: recover}\n", "")
        .replace('"{fetch.error.message} ({fetch.error.kind}, {fetch.status_code})"', "sorry")
    )

    workflow, problems, warnings = check_workflow(text)

    assert problems == []
    assert workflow is not None
    warning = only(warnings)
    assert warning.message == (
        "step 'recover' can never run: no path from the first step leads to it")
    assert (warning.line, warning.step_id, warning.field) == (13, "recover", None)


@pytest.mark.parametrize("step_type", ["http", "llm", "condition", "notify", "trigger"])
def test_check_workflow_error_of_any_step_type_is_a_readable_output_key(step_type: str) -> None:
    config = {"http": "url: http://h", "llm": "prompt: hi", "condition": "condition: 'true'",
              "notify": "message: hi", "trigger": ""}[step_type]
    text = steps_text(
        f"""\
        - id: first
          type: {step_type}
          {config}
          on_error: continue
        - id: tell
          type: notify
          message: "{{first.error.message}} {{first.error.attempts}}"
        """
    )

    _workflow, problems, _warnings = check_workflow(text)

    assert problems == []


def test_check_workflow_misspelt_error_key_is_still_refused() -> None:
    text = steps_text(RECOVERY.replace("{fetch.error.message}", "{fetch.eror.message}"))

    problem = only(check_workflow(text)[1])

    assert problem.message.startswith("{fetch.eror.message}: an http step's output has no 'eror'")
    assert "error" in problem.message
    assert (problem.line, problem.step_id, problem.field) == (16, "recover", "message")


def test_check_workflow_on_error_goto_unknown_step_names_the_steps() -> None:
    text = steps_text(RECOVERY.replace("{goto: recover}", "{goto: recovr}"))

    problem = only(problems_of(text))

    assert problem.message == (
        "on_error goes to unknown step 'recovr' (steps: start, fetch, done, recover, end)")
    assert (problem.line, problem.step_id, problem.field) == (8, "fetch", "on_error")


def test_check_workflow_on_error_goto_unknown_step_in_block_style_is_located() -> None:
    text = steps_text(RECOVERY.replace("on_error: {goto: recover}",
                                       "on_error:\n    goto: nowhere"))

    problem = only(problems_of(text))

    assert problem.message.startswith("on_error goes to unknown step 'nowhere'")
    assert (problem.line, problem.step_id, problem.field) == (9, "fetch", "on_error")


@pytest.mark.parametrize(("value", "expected"), [
    ("explode", "must be 'fail', 'continue' or {goto: step_id}, not 'explode'"),
    ("{gooto: recover}", "unknown key 'gooto'; did you mean 'goto'?"),
    ('{goto: "{trigger.body.x}"}', "string should match pattern"),
])
def test_check_workflow_bad_on_error_gets_one_error_in_its_own_words(
    value: str, expected: str
) -> None:
    """Not one error per form of the union, nor pydantic's class names, nor a second
    'unknown step' for a target that is no step id at all."""
    text = steps_text(RECOVERY.replace("{goto: recover}", value))

    problems = [p for p in problems_of(text)
                if p.step_id == "fetch" and "missing required key" not in p.message]

    assert [p.message.startswith(expected) for p in problems] == [True], problems
    assert "OnErrorGoto" not in repr(problems_of(text))


@pytest.mark.parametrize(("value", "shown"), [("anything", "'anything'"), ("404", "404")])
def test_check_workflow_accept_status_of_neither_form_gets_one_error(
    value: str, shown: str
) -> None:
    text = steps_text(RECOVERY.replace("on_error: {goto: recover}",
                                       f"on_error: {{goto: recover}}\n  accept_status: {value}"))

    problem = only(problems_of(text))

    assert problem.message == f"must be a list of statuses (200, '4xx') or 'any', not {shown}"
    assert (problem.step_id, problem.field) == ("fetch", "accept_status")


def test_check_workflow_on_error_goto_itself_is_refused_pointing_at_retry() -> None:
    text = steps_text(RECOVERY.replace("{goto: recover}", "{goto: fetch}"))

    problem = only(problems_of(text))

    assert problem.message == "on_error cannot go to the failing step itself; use retry"
    assert (problem.line, problem.step_id, problem.field) == (8, "fetch", "on_error")


def test_check_workflow_on_error_goto_backwards_makes_a_loop() -> None:
    text = steps_text(
        """\
        - id: start
          type: trigger
        - id: prepare
          type: notify
          message: "after {fetch.error.kind ?? \\"nothing\\"}"
        - id: fetch
          type: http
          url: http://api.test/data
          on_error: {goto: prepare}
        """
    )

    workflow, problems, warnings = check_workflow(text)

    assert (problems, warnings) == ([], [])
    assert workflow is not None


def test_check_workflow_read_of_a_later_step_is_refused_without_a_goto_loop() -> None:
    text = steps_text(
        """\
        - id: start
          type: trigger
        - id: prepare
          type: notify
          message: "after {fetch.error.kind ?? \\"nothing\\"}"
        - id: fetch
          type: http
          url: http://api.test/data
        """
    )

    problem = only(problems_of(text))

    assert problem.message.endswith("reads step 'fetch', which can never have run before this step")
    assert (problem.line, problem.step_id, problem.field) == (7, "prepare", "message")


def test_parse_workflow_keeps_the_workflow_timeout() -> None:
    workflow = parse_workflow(steps_text("- id: start\n  type: trigger\n", top="timeout: 90\n"))

    assert workflow.timeout == 90


def test_parse_workflow_without_timeout_has_none() -> None:
    assert parse_workflow(steps_text("- id: start\n  type: trigger\n")).timeout is None
