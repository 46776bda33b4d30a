"""Workflow definitions: YAML text in, a checked ``Workflow`` out, every problem located.

One validator serves the API, ``stepstream validate`` and the engine. It reports
all problems of a file at once, each with line, column, step id and field:

- YAML syntax, duplicate keys, and the limits of ``_yaml``;
- the format (``model.WorkflowModel``): unknown or missing keys, wrong value types,
  unknown node types;
- duplicate step ids; jump targets that do not exist;
- templates that name no step, or a step that can never have run before the step
  reading it on any path; condition expressions that do not parse.

Warnings do not stop registration: unreachable steps, a template reading a step a
branch may skip (without a ``?? default``), keys accepted only for the original
format.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from stepstream import _yaml, expressions, policy, templates
from stepstream.errors import Problem, WorkflowInvalidError
from stepstream.model import NODE_TYPES, STEP_ID, WorkflowModel

NO_EFFECT_KEYS = {"output_key": "llm", "path": "trigger"}
# The top-level keys of each node type's output: a template reading another is a typo
# (the original's lead_qualification read {qualify.score}; the score is under parsed).
# A step that failed has ``error`` (message, kind, status_code) for ``on_error`` routes.
OUTPUT_KEYS = {
    "trigger": ("body", "headers", "error"),
    "http": ("status_code", "body", "headers", "error"),
    "llm": ("content", "parsed", "model", "stop_reason", "usage", "error"),
    "condition": ("result", "next_step", "condition", "evaluated_to", "error"),
    "notify": ("channel", "message", "recipient", "subject", "sent", "delivered", "note",
               "url", "status_code", "error"),
}


@dataclass(frozen=True)
class Step:
    """One step of a workflow.

    Attributes:
        id: Unique within the workflow; templates read its output as ``{id.field}``.
        type: The node type that runs it.
        config: The step's mapping as written (checked against the model).
        line: 1-based line where the step starts in the YAML text.
        max_iterations: How many times it may run in one run.
    """

    id: str
    type: str
    config: dict[str, Any] = field(hash=False, compare=False)
    line: int | None = None
    max_iterations: int = 10


@dataclass(frozen=True)
class Workflow:
    """A parsed and checked workflow.

    Attributes:
        name: The workflow's name.
        description: Free text.
        trigger: The trigger mapping (``type``, ``path``).
        steps: The steps in file order.
        yaml_content: The text it was parsed from, kept verbatim.
        warnings: Problems that do not stop the workflow from running.
        timeout: Seconds the whole run may take, if limited.
    """

    name: str
    description: str
    trigger: dict[str, Any]
    steps: tuple[Step, ...]
    yaml_content: str
    warnings: tuple[Problem, ...] = ()
    timeout: float | None = None

    @property
    def trigger_path(self) -> str:
        """The webhook path, ``/triggers/<name>`` unless the trigger names one."""
        path = str(self.trigger.get("path") or f"/triggers/{self.name}")
        return path if path.startswith("/") else f"/{path}"

    @property
    def step_ids(self) -> tuple[str, ...]:
        """Step ids in file order."""
        return tuple(step.id for step in self.steps)

    def index_of(self, step_id: str) -> int:
        """Position of ``step_id`` in ``steps``; raises ``KeyError`` if absent."""
        for index, step in enumerate(self.steps):
            if step.id == step_id:
                return index
        raise KeyError(step_id)


class _Locator:
    """Turns paths in the document into problems with line, column and step id."""

    def __init__(self, data: Any, positions: _yaml.Positions) -> None:
        self.positions = positions
        raw_steps = data.get("steps") if isinstance(data, dict) else None
        self.raw_steps = raw_steps if isinstance(raw_steps, list) else []

    def step_id(self, path: tuple) -> str | None:
        if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
            if path[1] < len(self.raw_steps) and isinstance(self.raw_steps[path[1]], dict):
                step_id = self.raw_steps[path[1]].get("id")
                return step_id if isinstance(step_id, str) else None
        return None

    def problem(self, message: str, path: tuple, key: str | None = None) -> Problem:
        position = None
        for depth in range(len(path), -1, -1):
            position = self.positions.get(tuple(path[:depth]))
            if position:
                break
        line, column = position or (None, None)
        return Problem(message, line, column, self.step_id(path), key)


def _model_message(error: dict[str, Any], key: str | None, allowed: list[str]) -> str:
    kind = error["type"]
    if kind == "missing":
        return f"missing required key '{key}'"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"unknown key '{key}'{hint}"
    if kind == "union_tag_invalid":
        return f"unknown node type {error['input'].get('type')!r} (known: {', '.join(NODE_TYPES)})"
    if kind == "union_tag_not_found":
        return f"missing required key 'type' (one of: {', '.join(NODE_TYPES)})"
    message = error["msg"].removeprefix("Value error, ")
    return message[0].lower() + message[1:]


def _model_problems(data: Any, locator: _Locator) -> list[Problem]:
    try:
        WorkflowModel.model_validate(data)
    except ValidationError as exc:
        problems = []
        located = []
        for error in exc.errors():
            loc = list(error["loc"])
            if len(loc) >= 3 and loc[0] == "steps" and loc[2] in NODE_TYPES:
                loc.pop(2)  # the discriminator's tag, not a key of the file
            located.append((_file_path(loc, data, error["type"]), error))
        for loc, error in located:
            if _other_form(loc, error, located):
                continue
            key = next((str(part) for part in reversed(loc) if not isinstance(part, int)), None)
            model = _model_for(loc, data)
            allowed = list(model.model_fields) if model else []
            if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
                key = "type"
                loc.append("type")
            problems.append(locator.problem(_model_message(error, key, allowed), tuple(loc), key))
        return problems
    return []


def _other_form(loc: list, error: dict[str, Any], located: list[tuple[list, Any]]) -> bool:
    """Whether ``error`` is noise from a union's word form, refusing a mapping or list.

    Another form of the union was meant to take that value, and reported its own
    error at or under the same place.
    """
    if error["type"] != "literal_error" or not isinstance(error["input"], (dict, list)):
        return False
    return any(other is not error and where[: len(loc)] == loc for where, other in located)


def _file_path(loc: list, data: Any, error_type: str) -> list:
    """``loc`` as a path in the file, without the names pydantic gives a union's members.

    Such a name (``literal['any']``, ``OnErrorGoto``, ``int``) is no key of the mapping
    at its depth; the one key that is not in the file is a missing one, kept to name it.
    """
    path, node = [], data
    for depth, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif not (error_type == "missing" and depth == len(loc) - 1):
            continue
        path.append(part)
    return path


def _model_for(loc: list, data: Any) -> Any:
    """The model of the mapping that holds ``loc``'s last key, for "did you mean" hints."""
    from stepstream import model

    if len(loc) >= 3 and loc[0] == "steps" and isinstance(loc[1], int):
        raw = data["steps"][loc[1]] if loc[1] < len(data["steps"]) else {}
        by_type = {"trigger": model.TriggerStep, "http": model.HttpStep, "llm": model.LlmStep,
                   "condition": model.ConditionStep, "notify": model.NotifyStep}
        current = by_type.get(raw.get("type")) if isinstance(raw, dict) else None
        inner = loc[2:-1]
    elif loc and loc[0] == "trigger":
        current, inner = model.TriggerModel, loc[1:-1]
    else:
        return model.WorkflowModel
    for part in inner:
        fields = current.model_fields if current is not None else {}
        if part not in fields:
            break
        current = _submodel(fields[part].annotation)
    return current


def _submodel(annotation: Any) -> Any:
    """The model a field holds (``RetryPolicy`` of ``RetryPolicy | None``), if one."""
    for member in typing.get_args(annotation) or (annotation,):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def _successors(steps: list[Step], index: int) -> list[int]:
    step, positions = steps[index], {s.id: i for i, s in enumerate(steps)}
    following = [index + 1] if index + 1 < len(steps) else []
    targets = []
    recovery = _goto(step)
    if recovery in positions:
        targets.append(positions[recovery])  # where the run goes when the step fails
    if step.type != "condition":
        return sorted({*following, *targets})
    for key in ("on_true", "on_false"):
        target = step.config.get(key)
        known = isinstance(target, str) and target in positions  # the model reports other types
        targets.extend([positions[target]] if known else following)
    return sorted(set(targets))


def _goto(step: Step) -> str | None:
    """The step a failure of ``step`` goes to (``on_error: {goto: ...}``), if any."""
    return policy.goto_target(step.config)


def _reachable(steps: list[Step], start: int, avoid: int | None = None) -> set[int]:
    seen, queue = {start}, deque([start])
    while queue:
        for following in _successors(steps, queue.popleft()):
            if following not in seen and following != avoid:
                seen.add(following)
                queue.append(following)
    return seen


class _Checker:
    """The checks that need the whole workflow: ids, jumps, references, reachability."""

    def __init__(self, steps: list[Step], locator: _Locator) -> None:
        self.steps = steps
        self.locator = locator
        self.ids = [step.id for step in steps]
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.reach = [_reachable(steps, i) for i in range(len(steps))]

    def at(self, index: int, key: str | None, message: str) -> Problem:
        path = ("steps", index, key) if key else ("steps", index)
        return self.locator.problem(message, path, key)

    def check_ids_and_jumps(self) -> None:
        seen: dict[str, int] = {}
        for index, step in enumerate(self.steps):
            if step.id in seen:
                first = self.steps[seen[step.id]].line
                message = (f"duplicate step id '{step.id}' (first on line {first}); "
                           "step ids must be unique")
                self.problems.append(self.at(index, "id", message))
            seen.setdefault(step.id, index)
            for key in ("on_true", "on_false"):
                target = step.config.get(key)
                if step.type == "condition" and target is not None and target not in self.ids:
                    message = f"jumps to unknown step '{target}' (steps: {', '.join(self.ids)})"
                    self.problems.append(self.at(index, key, message))
            recovery = _goto(step)
            # A target that is no step id at all has its error from the model already.
            if (recovery is not None and recovery not in self.ids
                    and re.fullmatch(STEP_ID, recovery)):
                message = (f"on_error goes to unknown step '{recovery}' "
                           f"(steps: {', '.join(self.ids)})")
                self.problems.append(self.at(index, "on_error", message))
            elif recovery == step.id:
                message = "on_error cannot go to the failing step itself; use retry"
                self.problems.append(self.at(index, "on_error", message))

    def check_references(self) -> None:
        for index, step in enumerate(self.steps):
            for path, text in templates.strings(
                {k: v for k, v in step.config.items() if k not in ("id", "type")}
            ):
                key = str(path[0])
                for ref in templates.references(text):
                    self.check_reference(index, key, ref)
                for bad in templates.MALFORMED_DEFAULT.findall(text):
                    if templates.REFERENCE.fullmatch(bad):
                        continue
                    message = (f"{bad}: a default must be JSON: a number, true, false, null, "
                               '[], {} or a string in double quotes')
                    self.problems.append(self.at(index, key, message))
            condition = step.config.get("condition")
            if step.type == "condition" and isinstance(condition, str):
                error = expressions.check_syntax(condition)
                if error:
                    self.problems.append(self.at(index, "condition", error))

    def check_reference(self, index: int, key: str, ref: templates.Reference) -> None:
        if ref.head == "trigger":
            return
        if ref.head not in self.ids:
            known = ", ".join(["trigger", *self.ids])
            message = (f"{ref} names no step '{ref.head}' (known: {known}); "
                       "write \\{ for a literal brace")
            self.problems.append(self.at(index, key, message))
            return
        source = self.ids.index(ref.head)
        if self.check_output_key(index, key, ref, self.steps[source]):
            return
        if index not in self.reach[source] or (source == index and not self.loops(index)):
            message = f"{ref} reads step '{ref.head}', which can never have run before this step"
            self.problems.append(self.at(index, key, message))
        elif not ref.has_default and source != 0 and index in _reachable(self.steps, 0, source):
            message = (f"{ref} reads step '{ref.head}', which a branch may skip; the step "
                       "then fails unless the template has a default ({path ?? value})")
            self.warnings.append(self.at(index, key, message))

    def check_output_key(
        self, index: int, key: str, ref: templates.Reference, source: Step
    ) -> bool:
        """Report a reference to an output key its step's type never has; True if so."""
        segments = ref.path.split(".")
        keys = OUTPUT_KEYS.get(source.type)
        if len(segments) < 2 or keys is None or segments[1] in keys:
            return False
        hint = ""
        if source.type == "llm":
            parsed = f"{{{source.id}.parsed.{segments[1]}}}"
            hint = f"; an answer's JSON fields are under parsed: {parsed}"
        article = "an" if source.type in ("llm", "http") else "a"  # as the names are said
        message = (f"{ref}: {article} {source.type} step's output has no '{segments[1]}' "
                   f"(it has: {', '.join(keys)}){hint}")
        self.problems.append(self.at(index, key, message))
        return True

    def loops(self, index: int) -> bool:
        return any(index in self.reach[following] for following in _successors(self.steps, index))

    def check_reachability(self) -> None:
        reached = self.reach[0] if self.steps else set()
        for index, step in enumerate(self.steps):
            if index not in reached:
                message = f"step '{step.id}' can never run: no path from the first step leads to it"
                self.warnings.append(self.at(index, None, message))
            for key, node_type in NO_EFFECT_KEYS.items():
                if step.type == node_type and key in step.config:
                    message = f"'{key}' is accepted for the original format but has no effect"
                    self.warnings.append(self.at(index, key, message))


def _limit(value: Any, default: int) -> int:
    usable = isinstance(value, int) and not isinstance(value, bool) and value > 0
    return value if usable else default


def _steps(data: dict[str, Any], locator: _Locator) -> list[Step]:
    """The steps that have an id and a type (others are already reported by the model)."""
    default_max = _limit(data.get("max_iterations"), 10)
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    steps = []
    for index, raw in enumerate(raw_steps):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            continue
        line = locator.positions.get(("steps", index), (None, None))[0]
        limit = _limit(raw.get("max_iterations"), default_max)
        steps.append(Step(raw["id"], str(raw.get("type")), dict(raw), line, limit))
    return steps


def check_workflow(text: str) -> tuple[Workflow | None, list[Problem], list[Problem]]:
    """Check a workflow's YAML text.

    Returns:
        The workflow (None when there are errors), its errors and its warnings.
    """
    try:
        data, positions, duplicates = _yaml.load(text)
    except WorkflowInvalidError as exc:
        return None, exc.problems, []
    locator = _Locator(data, positions)
    problems = [
        Problem(p.message, p.line, p.column, locator.step_id((*path, 0)) if path else None, p.field)
        for p, path in duplicates
    ]
    if not isinstance(data, dict):
        return None, [*problems, Problem("a workflow must be a YAML mapping", 1, 1)], []
    problems += _model_problems(data, locator)
    checker = _Checker(_steps(data, locator), locator)
    checker.check_ids_and_jumps()
    if not checker.problems:
        checker.check_references()
    problems += checker.problems
    if not problems:
        checker.check_reachability()
    if problems:
        return None, problems, []
    workflow = Workflow(
        name=data["name"],
        description=str(data.get("description") or ""),
        trigger=data.get("trigger") or {},
        steps=tuple(checker.steps),
        yaml_content=text,
        warnings=tuple(checker.warnings),
        timeout=data.get("timeout"),
    )
    return workflow, [], checker.warnings


def parse_workflow(text: str) -> Workflow:
    """Parse and check a workflow's YAML text.

    Raises:
        WorkflowInvalidError: With every problem found, each located in the text.
    """
    workflow, problems, _warnings = check_workflow(text)
    if workflow is None:
        raise WorkflowInvalidError(problems)
    return workflow
