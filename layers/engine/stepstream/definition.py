"""Workflow definitions: YAML text in, a checked ``Workflow`` out.

The format is the original service's: ``name``, ``description``, ``trigger`` and a
list of ``steps``, each an ``id``, a ``type`` and that type's keys. Problems are
collected, located by line and column, and reported together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from stepstream.errors import Problem, WorkflowInvalidError

NODE_TYPES = frozenset({"trigger", "http", "llm", "condition", "notify"})


@dataclass(frozen=True)
class Step:
    """One step of a workflow.

    Attributes:
        id: Unique within the workflow; templates read its output as ``{id.field}``.
        type: The node type that runs it.
        config: The step's whole mapping as written, ``id`` and ``type`` included.
        line: 1-based line where the step starts in the YAML text.
    """

    id: str
    type: str
    config: dict[str, Any] = field(hash=False, compare=False)
    line: int | None = None


@dataclass(frozen=True)
class Workflow:
    """A parsed and checked workflow.

    Attributes:
        name: The workflow's name.
        description: Free text.
        trigger: The trigger mapping (``type``, ``path``).
        steps: The steps in file order.
        yaml_content: The text it was parsed from, kept verbatim.
    """

    name: str
    description: str
    trigger: dict[str, Any]
    steps: tuple[Step, ...]
    yaml_content: str

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


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _compose(text: str) -> tuple[Any, yaml.Node | None]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise WorkflowInvalidError(
            [Problem(f"invalid YAML: {exc.problem or exc}", line=line, column=column)]
        ) from exc
    except yaml.YAMLError as exc:
        raise WorkflowInvalidError([Problem(f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    return data, node


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return value_node
    return None


def _step_nodes(root: yaml.Node | None) -> list[yaml.Node | None]:
    steps = _child(root, "steps")
    return list(steps.value) if isinstance(steps, yaml.SequenceNode) else []


def _check_step(index: int, raw: Any, node: yaml.Node | None, seen: set[str]) -> list[Problem]:
    line, column = _mark(node) if node is not None else (None, None)
    if not isinstance(raw, dict):
        return [Problem(f"step {index + 1} must be a mapping", line=line, column=column)]
    step_id, node_type = raw.get("id"), raw.get("type")
    problems = []
    if not isinstance(step_id, str) or not step_id:
        problems.append(Problem(f"step {index + 1} needs an 'id'", line, column, field="id"))
    elif step_id in seen:
        problems.append(Problem("duplicate step id", line, column, step_id, "id"))
    if not isinstance(node_type, str) or node_type not in NODE_TYPES:
        known = ", ".join(sorted(NODE_TYPES))
        message = f"unknown node type {node_type!r} (known: {known})"
        problems.append(Problem(message, line, column, step_id, "type"))
    return problems


def _check_jumps(steps: list[Step]) -> list[Problem]:
    positions = {step.id: index for index, step in enumerate(steps)}
    problems = []
    for index, step in enumerate(steps):
        if step.type != "condition":
            continue
        for key in ("on_true", "on_false"):
            target = step.config.get(key)
            if target is None:
                continue
            if not isinstance(target, str) or target not in positions:
                message = f"jumps to unknown step {target!r}"
            elif positions[target] <= index:
                message = f"jumps back to {target!r}; loops are not supported yet"
            else:
                continue
            problems.append(Problem(message, step.line, None, step.id, key))
    return problems


def parse_workflow(text: str) -> Workflow:
    """Parse and check a workflow's YAML text.

    Args:
        text: The YAML document.

    Returns:
        The checked workflow.

    Raises:
        WorkflowInvalidError: With every problem found, each located in the text.
    """
    data, root = _compose(text)
    if not isinstance(data, dict):
        raise WorkflowInvalidError([Problem("a workflow must be a YAML mapping", 1, 1)])
    problems: list[Problem] = []
    name = data.get("name")
    if not isinstance(name, str) or not name:
        problems.append(Problem("a workflow needs a 'name'", 1, 1, field="name"))
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(Problem("a workflow needs a non-empty 'steps' list", 1, 1, field="steps"))
        raw_steps = []
    nodes = _step_nodes(root)
    steps: list[Step] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_steps):
        node = nodes[index] if index < len(nodes) else None
        step_problems = _check_step(index, raw, node, seen)
        problems.extend(step_problems)
        if not step_problems:
            seen.add(raw["id"])
            line = _mark(node)[0] if node is not None else None
            steps.append(Step(raw["id"], raw["type"], dict(raw), line))
    problems.extend(_check_jumps(steps))
    trigger = data.get("trigger") or {}
    if not isinstance(trigger, dict):
        problems.append(Problem("'trigger' must be a mapping", 1, 1, field="trigger"))
    if problems:
        raise WorkflowInvalidError(problems)
    return Workflow(
        name=name,
        description=str(data.get("description") or ""),
        trigger=trigger,
        steps=tuple(steps),
        yaml_content=text,
    )
