"""CloudFormation's intrinsic functions, resolved against one local stack (pure).

Implements ``Ref``, ``Fn::GetAtt``, ``Fn::Sub`` (string and ``[string, variables]`` forms,
``${!Literal}``), ``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::If`` / ``Fn::Equals`` /
``Fn::Not`` / ``Fn::And`` / ``Fn::Or`` / ``Condition`` with the template's ``Conditions``,
``Fn::FindInMap``, ``Fn::Base64``, ``Fn::GetAZs``, ``Fn::ToJsonString``, ``Fn::Length`` and the
pseudo parameters (``AWS::Region``, ``AWS::AccountId``, ``AWS::Partition``, ``AWS::StackName``,
``AWS::StackId``, ``AWS::URLSuffix``, ``AWS::NoValue``, ``AWS::NotificationARNs``) —
CloudFormation User Guide, "Intrinsic function reference" (apigw spec §10.3).

What a resource's ``Ref`` and attributes are is the caller's (``projects.template``): it knows
the resource types. ``AWS::NoValue`` removes the key or list item that holds it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


class IntrinsicError(Exception):
    """A value cannot be resolved; ``path`` says where (``X.Properties.Code``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Stack:
    """The pseudo parameters of the local stack."""

    region: str = "us-east-1"
    account_id: str = "123456789012"
    stack_name: str = "sockway-local"
    partition: str = "aws"
    url_suffix: str = "amazonaws.com"

    @property
    def stack_id(self) -> str:
        return (
            f"arn:{self.partition}:cloudformation:{self.region}:{self.account_id}:stack/"
            f"{self.stack_name}/00000000-0000-0000-0000-000000000000"
        )


@dataclass
class Resolver:
    """Resolves intrinsic functions; ``ref`` and ``get_att`` answer for resources (they raise
    ``KeyError`` for an unknown logical id or attribute)."""

    stack: Stack
    parameters: Mapping[str, Any]
    ref: Callable[[str], Any]
    get_att: Callable[[str, str], Any]
    mappings: Mapping[str, Any] = field(default_factory=dict)
    conditions: Mapping[str, Any] = field(default_factory=dict)
    _evaluated: dict[str, bool] = field(default_factory=dict)
    _evaluating: set[str] = field(default_factory=set)

    # -- public -------------------------------------------------------------------------------

    def resolve(self, value: Any, path: str) -> Any:
        """``value`` with every intrinsic function replaced by its result."""
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                    return self._function(key, arg, f"{path}.{key}")
            out: dict[str, Any] = {}
            for key, item in value.items():
                resolved = self.resolve(item, f"{path}.{key}")
                if resolved is not NO_VALUE:
                    out[key] = resolved
            return out
        if isinstance(value, list):
            items = [self.resolve(item, f"{path}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        return value

    def condition(self, name: str, path: str) -> bool:
        """The value of the template's condition ``name``."""
        if name in self._evaluated:
            return self._evaluated[name]
        if name not in self.conditions:
            raise IntrinsicError(path, f"condition '{name}' is not declared in Conditions")
        if name in self._evaluating:
            raise IntrinsicError(path, f"condition '{name}' refers to itself")
        self._evaluating.add(name)
        result = self._truth(self.resolve(self.conditions[name], f"Conditions.{name}"), path)
        self._evaluating.discard(name)
        self._evaluated[name] = result
        return result

    # -- functions ----------------------------------------------------------------------------

    def _function(self, key: str, arg: Any, path: str) -> Any:
        handler = _FUNCTIONS.get(key)
        if handler is None:
            raise IntrinsicError(path, f"{key} is not supported by sockway")
        return handler(self, arg, path)

    def _ref(self, arg: Any, path: str) -> Any:
        name = self.resolve(arg, path)
        if not isinstance(name, str):
            raise IntrinsicError(path, "Ref takes a name")
        return self._named(name, path)

    def _named(self, name: str, path: str) -> Any:
        pseudo = self._pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.parameters:
            return self.parameters[name]
        try:
            return self.ref(name)
        except KeyError:
            raise IntrinsicError(
                path, f"'{name}' is neither a parameter nor a resource of the template"
            ) from None

    def _pseudo(self, name: str) -> Any:
        stack = self.stack
        return {
            "AWS::Region": stack.region,
            "AWS::AccountId": stack.account_id,
            "AWS::Partition": stack.partition,
            "AWS::StackName": stack.stack_name,
            "AWS::StackId": stack.stack_id,
            "AWS::URLSuffix": stack.url_suffix,
            "AWS::NoValue": NO_VALUE,
            "AWS::NotificationARNs": [],
        }.get(name)

    def _get_att(self, arg: Any, path: str) -> Any:
        arg = self.resolve(arg, path)
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
            raise IntrinsicError(path, "Fn::GetAtt takes [LogicalId, Attribute]")
        return self._attribute(arg[0], arg[1], path)

    def _attribute(self, logical_id: str, attribute: str, path: str) -> Any:
        try:
            return self.get_att(logical_id, attribute)
        except KeyError:
            raise IntrinsicError(
                path, f"{logical_id}.{attribute}: no such resource or attribute in the template"
            ) from None

    def _sub(self, arg: Any, path: str) -> Any:
        variables: dict[str, Any] = {}
        if isinstance(arg, list):
            if len(arg) != 2 or not isinstance(arg[1], dict):
                raise IntrinsicError(path, "Fn::Sub takes a string or [string, {variables}]")
            text = arg[0]
            variables = {k: self.resolve(v, f"{path}[1].{k}") for k, v in arg[1].items()}
        else:
            text = arg
        if not isinstance(text, str):
            raise IntrinsicError(path, "Fn::Sub takes a string")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            name = name.strip()
            if name in variables:
                value = variables[name]
            elif "." in name and self._pseudo(name) is None and name not in self.parameters:
                logical_id, _, attribute = name.partition(".")
                value = self._attribute(logical_id, attribute, path)
            else:
                value = self._named(name, path)
            return _string(value, path)

        return _SUB_VARIABLE.sub(substitute, text)

    def _join(self, arg: Any, path: str) -> Any:
        arg = self.resolve(arg, path)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
            raise IntrinsicError(path, "Fn::Join takes [delimiter, [values]]")
        return str(arg[0]).join(_string(item, path) for item in arg[1])

    def _select(self, arg: Any, path: str) -> Any:
        arg = self.resolve(arg, path)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
            raise IntrinsicError(path, "Fn::Select takes [index, [values]]")
        try:
            index = int(arg[0])
            return arg[1][index] if index >= 0 else _raise_index()
        except (ValueError, IndexError):
            raise IntrinsicError(path, f"Fn::Select: no item {arg[0]!r} in {arg[1]!r}") from None

    def _split(self, arg: Any, path: str) -> Any:
        arg = self.resolve(arg, path)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], str)):
            raise IntrinsicError(path, "Fn::Split takes [delimiter, string]")
        return arg[1].split(str(arg[0]))

    def _if(self, arg: Any, path: str) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
            raise IntrinsicError(
                path, "Fn::If takes [ConditionName, value_if_true, value_if_false]"
            )
        chosen = 1 if self.condition(arg[0], path) else 2
        return self.resolve(arg[chosen], f"{path}[{chosen}]")

    def _equals(self, arg: Any, path: str) -> Any:
        arg = self.resolve(arg, path)
        if not (isinstance(arg, list) and len(arg) == 2):
            raise IntrinsicError(path, "Fn::Equals takes [value, value]")
        return _string(arg[0], path) == _string(arg[1], path)

    def _not(self, arg: Any, path: str) -> Any:
        arg = self.resolve(arg, path)
        if not (isinstance(arg, list) and len(arg) == 1):
            raise IntrinsicError(path, "Fn::Not takes [condition]")
        return not self._truth(arg[0], path)

    def _and(self, arg: Any, path: str) -> Any:
        arg = self.resolve(arg, path)
        if not isinstance(arg, list):
            raise IntrinsicError(path, "Fn::And takes a list of conditions")
        return all(self._truth(a, path) for a in arg)

    def _or(self, arg: Any, path: str) -> Any:
        arg = self.resolve(arg, path)
        if not isinstance(arg, list):
            raise IntrinsicError(path, "Fn::Or takes a list of conditions")
        return any(self._truth(a, path) for a in arg)

    def _condition(self, arg: Any, path: str) -> Any:
        if not isinstance(arg, str):
            raise IntrinsicError(path, "Condition takes a condition name")
        return self.condition(arg, path)

    def _truth(self, value: Any, path: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise IntrinsicError(path, f"a condition must be true or false, not {value!r}")

    def _find_in_map(self, arg: Any, path: str) -> Any:
        arg = self.resolve(arg, path)
        if not (isinstance(arg, list) and len(arg) in (3, 4)):
            raise IntrinsicError(path, "Fn::FindInMap takes [MapName, TopKey, SecondKey]")
        name, top, second = (_string(a, path) for a in arg[:3])
        try:
            return self.mappings[name][top][second]
        except (KeyError, TypeError):
            if len(arg) == 4 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                return arg[3]["DefaultValue"]
            raise IntrinsicError(path, f"Mappings.{name}.{top}.{second} does not exist") from None

    def _base64(self, arg: Any, path: str) -> Any:
        text = _string(self.resolve(arg, path), path)
        return base64.b64encode(text.encode()).decode()

    def _get_azs(self, arg: Any, path: str) -> Any:
        region = self.resolve(arg, path) or self.stack.region
        return [f"{region}{zone}" for zone in "abc"]

    def _to_json_string(self, arg: Any, path: str) -> Any:
        return json.dumps(self.resolve(arg, path), separators=(",", ":"))

    def _length(self, arg: Any, path: str) -> Any:
        value = self.resolve(arg, path)
        if not isinstance(value, list):
            raise IntrinsicError(path, "Fn::Length takes a list")
        return len(value)


def _raise_index() -> Any:
    raise IndexError


def _string(value: Any, path: str) -> str:
    """A scalar as CloudFormation writes it into a string (``true``, ``5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise IntrinsicError(path, f"expected a string, got {type(value).__name__} {value!r}")


_FUNCTIONS: dict[str, Callable[[Resolver, Any, str], Any]] = {
    "Ref": Resolver._ref,
    "Condition": Resolver._condition,
    "Fn::GetAtt": Resolver._get_att,
    "Fn::Sub": Resolver._sub,
    "Fn::Join": Resolver._join,
    "Fn::Select": Resolver._select,
    "Fn::Split": Resolver._split,
    "Fn::If": Resolver._if,
    "Fn::Equals": Resolver._equals,
    "Fn::Not": Resolver._not,
    "Fn::And": Resolver._and,
    "Fn::Or": Resolver._or,
    "Fn::FindInMap": Resolver._find_in_map,
    "Fn::Base64": Resolver._base64,
    "Fn::GetAZs": Resolver._get_azs,
    "Fn::ToJsonString": Resolver._to_json_string,
    "Fn::Length": Resolver._length,
}


def scalar_string(value: Any, path: str) -> str:
    """A resolved scalar as a string (environment variables: CloudFormation stringifies)."""
    return _string(value, path)
