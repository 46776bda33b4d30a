"""Reading workflow YAML so that what the author wrote is what the engine gets.

PyYAML's defaults change a document silently in ways that bite workflow authors:
a key written twice keeps the last value (case C08), YAML 1.1 turns ``yes``/``no``/
``on``/``off`` into booleans, ``1:30`` into 5400, ``010`` into 8, and dates into
objects that are not JSON. This loader follows YAML 1.2's core schema instead
(only ``true``/``false``, ``null``/``~``/empty, decimal, ``0o`` and ``0x`` integers and
floats are special), refuses duplicate keys (overriding a ``<<`` merged key stays
legal), and bounds the document so that alias bombs and deep nesting cannot exhaust
a Lambda: the limits are in the error messages.

Every value's position is recorded by its path (``("steps", 1, "on_true")``), so
later checks can point at a line and column.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from stepstream.errors import Problem, WorkflowInvalidError

MAX_DOCUMENT_BYTES = 256 * 1024
MAX_DEPTH = 64
MAX_NODES = 20_000

Path = tuple[str | int, ...]
Positions = dict[Path, tuple[int, int]]


class _CoreResolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema scalars: nothing else is implicitly typed."""


_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^<<$"), ["<"])


class _Constructor(yaml.constructor.SafeConstructor):
    """SafeConstructor with YAML 1.2 integers (``0o17``, ``0x1f``; ``010`` is ten)."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node)).lower()
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text)


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)


def _not_json(constructor: _Constructor, node: yaml.Node) -> None:
    raise yaml.constructor.ConstructorError(
        None, None, f"the tag {node.tag} makes a value JSON cannot hold", node.start_mark
    )


# Workflows are JSON-shaped data: tags that build dates, bytes or sets are refused.
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    _Constructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _not_json)


class _Loader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _Constructor,
    _CoreResolver,
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Constructor.__init__(self)
        _CoreResolver.__init__(self)


def _at(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Walker:
    """Checks the composed node graph and records each value's position by path."""

    def __init__(self) -> None:
        self.positions: Positions = {}
        self.problems: list[tuple[Problem, Path]] = []
        self.nodes = 0

    def walk(self, node: yaml.Node, path: Path, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Limit(f"the document expands to more than {MAX_NODES} values", node)
        if depth > MAX_DEPTH:
            raise _Limit(f"the document nests deeper than {MAX_DEPTH} levels", node)
        self.positions.setdefault(path, _at(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.walk(item, (*path, index), depth + 1)
        elif isinstance(node, yaml.MappingNode):
            self.walk_mapping(node, path, depth)

    def walk_mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> None:
        seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.walk(value_node, path, depth + 1)
                continue
            key = str(key_node.value)
            if key in seen:
                first_line = _at(seen[key])[0]
                line, column = _at(key_node)
                message = (f"duplicate key '{key}' (first on line {first_line}); "
                           "keys must be unique in a mapping")
                self.problems.append((Problem(message, line, column, field=key), path))
                continue
            seen[key] = key_node
            self.walk(value_node, (*path, key), depth + 1)


class _Limit(Exception):
    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.node = node


def _syntax_problem(exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    text = getattr(exc, "problem", None) or str(exc)
    return Problem(f"invalid YAML: {text}", line, column)


def load(text: str) -> tuple[Any, Positions, list[tuple[Problem, Path]]]:
    """Load one YAML document strictly.

    Args:
        text: The document.

    Returns:
        The data, the position of every value by path, and the duplicate-key problems
        with the path of the mapping each is in (reported with the rest of a file's
        problems rather than alone).

    Raises:
        WorkflowInvalidError: The text is not YAML, holds more than one document, or
            exceeds a size, depth or alias-expansion limit.
    """
    if len(text.encode("utf-8", errors="replace")) > MAX_DOCUMENT_BYTES:
        raise WorkflowInvalidError([Problem(
            f"the document is larger than the limit of {MAX_DOCUMENT_BYTES // 1024} KiB", 1, 1
        )])
    loader = None
    try:
        loader = _Loader(text)
        root = loader.get_single_node()
        if root is None:
            return None, {}, []
        walker = _Walker()
        walker.walk(root, (), 0)
        data = loader.construct_document(root)
    except _Limit as exc:
        line, column = _at(exc.node)
        raise WorkflowInvalidError([Problem(str(exc), line, column)]) from None
    except yaml.YAMLError as exc:
        raise WorkflowInvalidError([_syntax_problem(exc)]) from exc
    except RecursionError as exc:
        message = f"the document nests deeper than {MAX_DEPTH} levels"
        raise WorkflowInvalidError([Problem(message, 1, 1)]) from exc
    finally:
        if loader is not None:
            loader.dispose()
    return data, walker.positions, walker.problems
