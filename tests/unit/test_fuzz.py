"""Whatever text arrives, checking it returns problems: it never raises and never hangs.

Registration runs ``check_workflow`` on text from the API, so any exception but
``WorkflowInvalidError`` would be a 500, and any input that makes it spin would hold
a Lambda until its timeout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stepstream import _yaml
from stepstream.definition import Workflow, check_workflow, parse_workflow
from stepstream.errors import Problem, WorkflowInvalidError

# pytest-timeout: a hang fails the test instead of stalling the suite.
pytestmark = pytest.mark.timeout(60)

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
BUILT_IN_TEXTS = [path.read_text(encoding="utf-8") for path in sorted(WORKFLOWS.glob("*.yaml"))]

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Words of the format, so generated mappings often look like workflows.
KEYS = (
    "name description trigger steps max_iterations id type url method headers body timeout "
    "prompt model max_tokens system condition on_true on_false channel message recipient "
    "output_key path <<"
).split()
WORDS = [
    *"trigger http llm condition notify start fetch GET POST yes 010 1:30".split(),
    *r"{start.body} {fetch.body.items.0} {nobody.x} \{escaped.y}".split(),
    "{trigger.body.x ?? 0}",
    "{fetch.status_code} == 200",
    "{x} >",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(WORDS),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
structures = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=24,
)
small_structures = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=6,
)
steps = st.fixed_dictionaries(
    {
        "id": st.one_of(st.sampled_from(["start", "fetch", "gate", "tell"]), st.text(max_size=4)),
        "type": st.one_of(
            st.sampled_from(["trigger", "http", "llm", "condition", "notify"]), scalars
        ),
    },
    optional={key: small_structures for key in KEYS if key not in ("id", "type")},
)
workflow_shaped = st.fixed_dictionaries(
    {
        "name": st.one_of(st.just("w"), scalars),
        "steps": st.one_of(st.lists(steps, max_size=6), structures),
    },
    optional={"trigger": structures, "max_iterations": scalars, "description": scalars},
)


@st.composite
def mutated_built_ins(draw: st.DrawFn) -> str:
    """A built-in workflow's text after a few random edits: insertions, cuts, line moves."""
    text = draw(st.sampled_from(BUILT_IN_TEXTS))
    punctuation = st.text(alphabet=list("{}[]:-#&*!|>'\"?\\ \t\n.,%@`~0aZ"), max_size=6)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        edit = draw(st.sampled_from(["insert", "cut", "repeat-line", "swap-lines"]))
        if edit == "insert":
            text = text[:at] + draw(punctuation) + text[at:]
        elif edit == "cut":
            text = text[:at] + text[at + draw(st.integers(min_value=1, max_value=40)) :]
        else:
            lines = text.splitlines(keepends=True) or [""]
            first = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            second = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            if edit == "repeat-line":
                lines.insert(first, lines[first])
            else:
                lines[first], lines[second] = lines[second], lines[first]
            text = "".join(lines)
    return text


def alias_fan(fan_out: int, levels: int) -> tuple[str, int]:
    """Nested alias lists (small text, maybe a huge expansion) and how many values they make."""
    lines = [f"l0: &l0 [{', '.join(['x'] * fan_out)}]"]
    size = total = 1 + fan_out
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * fan_out)}]")
        size = 1 + fan_out * size
        total += size
    return "\n".join(lines) + "\n", 1 + total


def assert_checked(text: str) -> None:
    """``check_workflow`` answers ``text`` with a consistent result and nothing else."""
    workflow, problems, warnings = check_workflow(text)

    last_line = len(text.splitlines()) + 1
    for problem in [*problems, *warnings]:
        assert isinstance(problem, Problem)
        assert isinstance(problem.message, str) and problem.message
        assert problem.line is None or 1 <= problem.line <= last_line
    if problems:
        assert workflow is None
    else:
        assert isinstance(workflow, Workflow)
        assert list(workflow.warnings) == warnings


def assert_parsed_or_refused(text: str) -> None:
    """``parse_workflow`` returns a workflow or raises ``WorkflowInvalidError``, nothing else."""
    try:
        workflow = parse_workflow(text)
    except WorkflowInvalidError as exc:
        assert exc.problems
    else:
        assert workflow.yaml_content == text


def dumped(data: Any) -> str:
    """``data`` as the YAML text a client could send."""
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@FUZZ
@given(st.text(max_size=400))
def test_check_workflow_arbitrary_text_returns_problems(text: str) -> None:
    assert_checked(text)
    assert_parsed_or_refused(text)


@FUZZ
@given(st.one_of(structures, workflow_shaped))
def test_check_workflow_arbitrary_yaml_structures_return_problems(data: Any) -> None:
    assert_checked(dumped(data))


@FUZZ
@given(mutated_built_ins())
def test_check_workflow_mutated_built_in_workflows_return_problems(text: str) -> None:
    assert_checked(text)
    assert_parsed_or_refused(text)


@settings(FUZZ, max_examples=60)
@given(st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=10))
def test_check_workflow_alias_expansion_refused_past_the_node_limit(
    fan_out: int, levels: int
) -> None:
    text, values = alias_fan(fan_out, levels)

    _workflow, problems, _warnings = check_workflow(text)

    limit = f"the document expands to more than {_yaml.MAX_NODES} values"
    if values > _yaml.MAX_NODES:
        assert [problem.message for problem in problems] == [limit]
    else:
        assert limit not in [problem.message for problem in problems]
        assert "missing required key 'name'" in [problem.message for problem in problems]
