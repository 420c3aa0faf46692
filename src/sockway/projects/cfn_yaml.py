"""Read a CloudFormation template: JSON, or YAML with the short forms of the intrinsic
functions (``!Ref``, ``!GetAtt``, ``!Sub`` …) turned into their long forms.

CloudFormation's YAML is YAML 1.1 with these tags; ``!GetAtt A.B`` is the string form of
``Fn::GetAtt: [A, B]``; ``!Ref X`` is ``{"Ref": X}``; every other ``!Name`` is ``{"Fn::Name": …}``
(``!Condition X`` is ``{"Condition": X}``). Dates stay strings (``AWSTemplateFormatVersion:
2010-09-09`` is not a date to CloudFormation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

_FUNCTIONS = (
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "ToJsonString",
    "Length",
)


class TemplateReadError(Exception):
    """The file is not a readable template (one line: where and why)."""


class _Loader(yaml.SafeLoader):
    pass


def _construct(node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


def _tag(name: str, key: str) -> None:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        value = _construct(node, loader)
        if name == "GetAtt" and isinstance(value, str):
            logical_id, _, attribute = value.partition(".")
            value = [logical_id, attribute]
        return {key: value}

    _Loader.add_constructor(f"!{name}", construct)


_tag("Ref", "Ref")
_tag("Condition", "Condition")
_tag("GetAtt", "Fn::GetAtt")
for _name in _FUNCTIONS:
    _tag(_name, f"Fn::{_name}")


def _no_timestamps() -> None:
    # CloudFormation reads 2010-09-09 as a string: drop the implicit timestamp resolver.
    for first, resolvers in list(_Loader.yaml_implicit_resolvers.items()):
        _Loader.yaml_implicit_resolvers[first] = [
            (tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"
        ]


_no_timestamps()


def load_template_text(text: str, source: str) -> dict[str, Any]:
    """Parse JSON or YAML template text; raise ``TemplateReadError`` naming ``source``."""
    stripped = text.lstrip()
    try:
        # _Loader is a SafeLoader subclass: no arbitrary objects.
        as_json = stripped.startswith("{")
        document = json.loads(text) if as_json else yaml.load(text, Loader=_Loader)
    except json.JSONDecodeError as exc:
        raise TemplateReadError(f"{source}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TemplateReadError(f"{source}:{where} invalid YAML: {problem}") from None
    if not isinstance(document, dict):
        raise TemplateReadError(f"{source}: a template must be a mapping of sections")
    return document


def load_template(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateReadError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return load_template_text(text, str(path))
