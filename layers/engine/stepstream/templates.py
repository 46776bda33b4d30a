r"""``{step_id.field}`` templates over earlier steps' outputs.

Grammar::

    template  := "{" path [ "??" default ] "}"
    path      := name ( "." segment )*          e.g. {fetch.body.items.0.name}
    name      := [A-Za-z_][A-Za-z0-9_-]*        a step id, or "trigger" (the run's input)
    segment   := [A-Za-z0-9_-]+                 a mapping key, or a list index
    default   := a JSON scalar, [] or {}        e.g. {lookup.body.name ?? "friend"}
    "\\{"      renders a literal "{" that starts no template

Anything else in braces (``{"status": "ok"}``, ``{ x }``) is plain text.

Rendering rules:

- A value that is exactly one template takes the referenced value with its type
  (number, boolean, list, object, null). Anything around it, even a space, makes
  the value text.
- Inside text, strings are inserted as they are; numbers, booleans, null, lists and
  objects as JSON text (``true``, ``null``, ``[{"a": 1}]``), never as Python's repr.
- In an ``http`` step's ``url``, a template that starts the value is inserted as is
  (it may carry a whole base URL); every other is percent-encoded, so ``/``, ``?``,
  ``#`` or ``&`` in data cannot change the URL's shape.
- A reference that cannot be resolved fails the step with an error that names it
  and says why: the step has not run, was skipped on this run's path, or lacks the
  key (listing the keys it has). A ``?? default`` is used in all those cases instead.
- Values are inserted once and never read again as templates or expressions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from stepstream.errors import TemplateError

_DEFAULT = r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|true|false|null|\[\]|\{\}'
REFERENCE = re.compile(
    r"(?<!\\)\{(?P<path>[A-Za-z_][\w-]*(?:\.[\w-]+)*)"
    rf"(?:\s*\?\?\s*(?P<default>{_DEFAULT}))?\}}"
)
_ESCAPED_BRACE = "\\{"
# Anything shaped like a reference with "??"; those REFERENCE refuses have a bad default.
MALFORMED_DEFAULT = re.compile(
    r"(?<!\\)\{[A-Za-z_][\w-]*(?:\.[\w-]+)*\s*\?\?(?:[^}\"]|\"[^\"]*\")*\}"
)


class _Skipped:
    """Marks, in a run's scope, a step that a branch skipped."""

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED: Any = _Skipped()
_MISSING: Any = object()


@dataclass(frozen=True)
class Reference:
    """One template found in a text."""

    path: str
    default: Any = _MISSING

    @property
    def head(self) -> str:
        """The step id (or ``trigger``) the path starts with."""
        return self.path.split(".", 1)[0]

    @property
    def has_default(self) -> bool:
        """Whether the template gives a default for absent values."""
        return self.default is not _MISSING

    def __str__(self) -> str:
        return f"{{{self.path}}}"


def _reference(match: re.Match[str]) -> Reference:
    raw = match.group("default")
    return Reference(match.group("path"), json.loads(raw) if raw is not None else _MISSING)


def references(text: str) -> list[Reference]:
    """Every template in ``text``, in order."""
    return [_reference(match) for match in REFERENCE.finditer(text)]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return {str: "a string", int: "a number", float: "a number", list: "a list"}.get(
        type(value), "an object"
    )


def _step(ref: Reference, scope: Mapping[str, Any], known: Collection[str]) -> Any:
    if ref.head not in known:
        raise LookupError(f"there is no step '{ref.head}'")
    if ref.head not in scope:
        raise LookupError(f"step '{ref.head}' has not run yet")
    if scope[ref.head] is SKIPPED:
        raise LookupError(f"step '{ref.head}' was skipped in this run")
    return scope[ref.head]


def _descend(value: Any, segment: str, where: str) -> Any:
    if isinstance(value, Mapping):
        if segment in value:
            return value[segment]
        keys = ", ".join(list(map(str, value))[:20]) or "no keys"
        raise LookupError(f"'{segment}' is not in {where} (it has: {keys})")
    if isinstance(value, list):
        if segment.isdigit() and int(segment) < len(value):
            return value[int(segment)]
        raise LookupError(f"{where} has no item {segment} (it has {len(value)} items)")
    raise LookupError(f"{where} is {_kind(value)}, so it has no '{segment}'")


def resolve(ref: Reference, scope: Mapping[str, Any], known: Collection[str], field: str) -> Any:
    """The value ``ref`` names in ``scope``, or its default when it names nothing.

    Raises:
        TemplateError: The value is absent and the template has no default.
    """
    try:
        value = _step(ref, scope, known)
        segments = ref.path.split(".")
        for depth, segment in enumerate(segments[1:], start=1):
            value = _descend(value, segment, ".".join(segments[:depth]))
    except LookupError as exc:
        if ref.has_default:
            return ref.default
        raise TemplateError(f"{field}: {ref} cannot be resolved: {exc}", reference=ref.path,
                            field=field) from None
    return value


def to_text(value: Any) -> str:
    """How a value reads inside text: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def render_string(
    text: str,
    scope: Mapping[str, Any],
    known: Collection[str],
    field: str = "value",
    url: bool = False,
) -> Any:
    """Render the templates in one string (see the module's rules).

    Args:
        text: The string as written in the workflow.
        scope: Outputs by step id of the steps that ran (``SKIPPED`` for skipped ones),
            plus ``trigger``.
        known: Every step id of the workflow, plus ``trigger``.
        field: The step key being rendered, for error messages.
        url: Whether ``text`` is a URL (values after its start are percent-encoded).
    """
    whole = REFERENCE.fullmatch(text)
    if whole:
        return resolve(_reference(whole), scope, known, field)
    pieces, position = [], 0
    for match in REFERENCE.finditer(text):
        pieces.append(text[position : match.start()].replace(_ESCAPED_BRACE, "{"))
        value = to_text(resolve(_reference(match), scope, known, field))
        pieces.append(quote(value, safe="") if url and match.start() > 0 else value)
        position = match.end()
    pieces.append(text[position:].replace(_ESCAPED_BRACE, "{"))
    return "".join(pieces)


def render(
    value: Any, scope: Mapping[str, Any], known: Collection[str], field: str = "value"
) -> Any:
    """Render every string inside ``value`` (nested mappings and lists too)."""
    if isinstance(value, str):
        return render_string(value, scope, known, field)
    if isinstance(value, Mapping):
        return {k: render(v, scope, known, field) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, scope, known, field) for v in value]
    return value


def strings(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[tuple, str]]:
    """Every string inside ``value`` with its path, for static checks."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [item for k, v in value.items() for item in strings(v, (*path, k))]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in strings(v, (*path, i))]
    return []
