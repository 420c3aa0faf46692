"""A template's ``Parameters``: the values ``sam deploy`` would use — ``samconfig.toml``'s
``parameter_overrides``, then ``--parameter NAME=VALUE``, then each parameter's ``Default``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sockway.projects.problems import Findings, ProjectError


def samconfig_parameters(directory: Path) -> dict[str, str]:
    """``parameter_overrides`` of ``samconfig.toml`` beside the template (``[default.deploy
    .parameters]``, else ``[default.global.parameters]``), as ``sam deploy`` uses them;
    ``--parameter`` wins over them."""
    import shlex
    import tomllib

    path = directory / "samconfig.toml"
    if not path.is_file():
        return {}
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProjectError([f"{path}: cannot read: {exc}"]) from None
    default = config.get("default") or {}
    for section in ("deploy", "global"):
        overrides = ((default.get(section) or {}).get("parameters") or {}).get(
            "parameter_overrides"
        )
        if overrides is None:
            continue
        pairs = overrides if isinstance(overrides, list) else shlex.split(str(overrides))
        out: dict[str, str] = {}
        for pair in pairs:
            name, sep, value = str(pair).partition("=")
            if sep:
                out[name] = value
        return out
    return {}


def template_parameters(
    document: dict[str, Any], overrides: dict[str, str], findings: Findings
) -> dict[str, Any]:
    """The values of the template's ``Parameters``: ``--parameter`` overrides (and
    ``samconfig.toml``'s), else their ``Default``; ``AllowedValues`` checked, list types split."""
    declared = document.get("Parameters") or {}
    values: dict[str, Any] = {}
    for name in overrides:
        if name not in declared:
            findings.problem(f"--parameter {name}", "the template declares no such parameter")
    for name, spec in declared.items():
        spec = spec if isinstance(spec, dict) else {}
        where = f"Parameters.{name}"
        kind = str(spec.get("Type", "String"))
        if name in overrides:
            value: Any = overrides[name]
        elif "Default" in spec:
            value = spec["Default"]
            if kind.startswith("AWS::SSM::Parameter::Value"):
                # CDK's BootstrapVersion: only its Rules read it. sockway reads no SSM, so
                # a resource using such a parameter needs --parameter.
                findings.ignore(
                    f"{where}: an SSM parameter, not read (its value here is the name "
                    f"{value!r}; give --parameter {name}=VALUE if a resource uses it)"
                )
        else:
            findings.problem(where, f"no Default: give --parameter {name}=VALUE")
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        allowed = spec.get("AllowedValues")
        if isinstance(allowed, list) and str(value) not in [str(a) for a in allowed]:
            findings.problem(where, f"{value!r} is not one of AllowedValues {allowed}")
        if "List" in kind and isinstance(value, str):
            value = [v.strip() for v in value.split(",")]
        elif isinstance(value, int | float):
            value = str(value)
        values[name] = value
    return values
