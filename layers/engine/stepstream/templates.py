"""``{step_id.field}`` templates over earlier steps' outputs.

Grammar: ``{`` head ``.`` segment ... ``}`` where head is a step id (or ``trigger``,
whose ``body`` is the run's input) and each segment is a mapping key or a list
index (``{fetch.body.items.0.name}``). Text in braces whose head is not a step of
the workflow is left as written, so prose and JSON examples in prompts survive.

Rendering rules:
- A string that is exactly one template takes the referenced value with its type
  (number, boolean, list, object, null).
- A template inside longer text renders strings as they are, numbers as JSON does,
  booleans and null as ``true``/``false``/``null``, and structures as JSON text.
- A reference to a step that has not run, or to a missing key, fails the step
  with an error naming the reference.
- Values are inserted once and never re-read as templates.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from stepstream import _json
from stepstream.errors import TemplateError

REFERENCE = re.compile(r"\{([A-Za-z_][\w-]*(?:\.[\w-]+)*)\}")


def _lookup(path: str, scope: Mapping[str, Any], field: str | None) -> Any:
    head, *segments = path.split(".")
    if head not in scope:
        raise TemplateError(
            f"{{{path}}} reads step '{head}', which has not run", reference=path, field=field
        )
    value = scope[head]
    for depth, segment in enumerate(segments):
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            where = ".".join([head, *segments[:depth]])
            raise TemplateError(
                f"{{{path}}}: '{segment}' not found in {where}", reference=path, field=field
            )
    return value


def to_text(value: Any) -> str:
    """How a value reads inside text: strings as is, everything else as JSON."""
    return value if isinstance(value, str) else _json.dumps(value)


def render_string(
    text: str, scope: Mapping[str, Any], known: Collection[str], field: str | None = None
) -> Any:
    """Render the templates in one string.

    Args:
        text: The string as written in the workflow.
        scope: Outputs by step id of the steps that ran, plus ``trigger``.
        known: Every step id of the workflow, plus ``trigger``.
        field: The step key being rendered, for error messages.

    Returns:
        The referenced value itself when ``text`` is one template, else a string.
    """
    whole = REFERENCE.fullmatch(text)
    if whole and whole.group(1).split(".")[0] in known:
        return _lookup(whole.group(1), scope, field)

    def replace(match: re.Match[str]) -> str:
        path = match.group(1)
        if path.split(".")[0] not in known:
            return match.group(0)
        return to_text(_lookup(path, scope, field))

    return REFERENCE.sub(replace, text)


def render(
    value: Any, scope: Mapping[str, Any], known: Collection[str], field: str | None = None
) -> Any:
    """Render every string inside ``value`` (nested mappings and lists too)."""
    if isinstance(value, str):
        return render_string(value, scope, known, field)
    if isinstance(value, Mapping):
        return {k: render(v, scope, known, field or str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope, known, field) for v in value]
    return value


def references(text: str, known: Collection[str]) -> list[str]:
    """The references in ``text`` whose head is a known step."""
    return [m.group(1) for m in REFERENCE.finditer(text) if m.group(1).split(".")[0] in known]
