"""Reading ``template.yaml``: its intrinsic functions and the resources we emulate."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::Partition": "aws",
    "AWS::StackName": "stepstream-local",
}


class _TemplateLoader(yaml.SafeLoader):
    """YAML loader that reads ``!Ref x`` as ``{"Ref": "x"}`` and the like."""


def _intrinsic(loader: _TemplateLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


@dataclass
class Template:
    """A loaded template with the values it resolves to on the local stack.

    Attributes:
        path: Where it was read from.
        body: The parsed document.
        parameters: Parameter values (defaults, overridden by the caller).
        physical: Resolved ``Ref`` of each emulated resource (table name, queue URL).
        attributes: Resolved ``GetAtt`` values by ``(logical id, attribute)``.
    """

    path: Path
    body: dict[str, Any]
    parameters: dict[str, str] = field(default_factory=dict)
    physical: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, overrides: dict[str, str]) -> Template:
        """Read ``path``; ``overrides`` replace parameter defaults."""
        body = yaml.load(path.read_text(), Loader=_TemplateLoader)  # noqa: S506 - SafeLoader
        parameters = {
            name: str(spec.get("Default", ""))
            for name, spec in body.get("Parameters", {}).items()
        }
        parameters.update({k: v for k, v in overrides.items() if k in parameters})
        return cls(path, body, parameters)

    @property
    def root(self) -> Path:
        """The project folder the template's relative paths start from."""
        return self.path.parent

    def resources(self, *types: str) -> dict[str, dict[str, Any]]:
        """Resources of the given types, by logical id."""
        items = self.body.get("Resources", {}).items()
        return {name: spec for name, spec in items if spec["Type"] in types}

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function the local stack knows evaluated."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt":
                return self.attributes[(arg[0], arg[1])]
            if key == "Fn::Sub":
                return re.sub(r"\$\{([\w:.]+)\}", lambda m: self._sub(m.group(1)), arg)
            if key == "Fn::If":
                condition, when_true, when_false = arg
                return self.resolve(when_true if self.condition(condition) else when_false)
            if key == "Fn::Equals":
                left, right = self.resolve(arg[0]), self.resolve(arg[1])
                return left == right
        return {k: self.resolve(v) for k, v in value.items()}

    def condition(self, name: str) -> bool:
        """The value of one of the template's ``Conditions``."""
        return bool(self.resolve(self.body.get("Conditions", {})[name]))

    def _ref(self, name: str) -> str:
        for table in (self.parameters, self.physical, PSEUDO):
            if name in table:
                return table[name]
        raise KeyError(f"{self.path.name}: !Ref {name} names nothing the local stack emulates")

    def _sub(self, name: str) -> str:
        if "." in name:
            logical, attribute = name.split(".", 1)
            return self.attributes[(logical, attribute)]
        return self._ref(name)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """A function's environment: the Globals' variables, then its own."""
        globals_env = self.body.get("Globals", {}).get("Function", {}).get("Environment", {})
        own_env = self.resources("AWS::Serverless::Function")[logical_id]["Properties"]
        merged = {**globals_env.get("Variables", {}),
                  **own_env.get("Environment", {}).get("Variables", {})}
        return {k: str(self.resolve(v)) for k, v in merged.items()}

    def function_setting(self, logical_id: str, key: str, default: Any = None) -> Any:
        """A function property, falling back to the Globals' value."""
        props = self.resources("AWS::Serverless::Function")[logical_id]["Properties"]
        globals_fn = self.body.get("Globals", {}).get("Function", {})
        return props.get(key, globals_fn.get(key, default))
