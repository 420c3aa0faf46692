"""Load the YAML configuration and report every problem with its key path.

Messages look like ``apis[0].routes.sendMessage: module 'x' not found``; ``sockway check-config``
prints them and ``sockway serve`` refuses to start with the same list.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sockway.config.models import RouteSpec, Settings

_API_TYPES = ("websocket",)
_LATER_TYPES = {"events": "AppSync Events", "pusher": "Pusher"}
# Names pydantic puts into error locations for union members; they are not config keys.
_UNION_MEMBERS = frozenset({"str", "RouteSpec", *_API_TYPES})


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def format_loc(loc: Iterable[int | str]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_MEMBERS or str(part).startswith("function-"):
            continue
        else:
            out += ("." if i else "") + str(part)
    return out.lstrip(".") or "(top level)"


def _format_errors(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for err in exc.errors():
        loc = format_loc(err["loc"])
        if err["type"] == "union_tag_invalid":
            tag = err.get("input", {}).get("type") if isinstance(err.get("input"), dict) else None
            if tag in _LATER_TYPES:
                msg = f"API type '{tag}' ({_LATER_TYPES[tag]}) is not available in this version"
            else:
                msg = f"unknown API type '{tag}' (expected one of: {', '.join(_API_TYPES)})"
            line = f"{loc}.type: {msg}"
        elif err["type"] == "union_tag_not_found":
            line = f"{loc}.type: missing (expected one of: {', '.join(_API_TYPES)})"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            line = f"{loc}: {msg}"
        if line not in seen:  # a union reports the same problem once per member
            seen.add(line)
            problems.append(line)
    return problems


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make relative paths relative to the config file's directory, not the CWD."""

    def fix(container: dict[str, Any], key: str) -> None:
        value = container.get(key)
        if isinstance(value, str) and value != "auto" and not Path(value).is_absolute():
            container[key] = str((base / value).resolve())

    fix(raw, "state_dir")
    if isinstance(raw.get("tls"), dict):
        fix(raw["tls"], "certificate")
        fix(raw["tls"], "key")
    for api in raw.get("apis") or []:
        if isinstance(api, dict):
            fix(api, "code_dir")


def parse_config(raw: Any, base_dir: Path) -> Settings:
    """Validate an already parsed document; raise ``ConfigError`` listing every problem."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): the configuration must be a mapping of keys"])
    if "state_dir" not in raw:
        raw["state_dir"] = ".sockway"
    _resolve_paths(raw, base_dir)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc)) from None
    problems = check_handlers(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def load_config(path: Path) -> Settings:
    """Read and validate a YAML configuration file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}:{where}: invalid YAML: {problem}"]) from None
    return parse_config(raw, path.parent.resolve())


def check_handlers(settings: Settings) -> list[str]:
    """Resolve every handler reference; one problem line per handler that cannot be loaded."""
    # Imported here: loading handlers imports user code, which the models must not do.
    import os

    from sockway.integrations.python import HandlerLoadError, load_handler

    problems: list[str] = []
    owners: dict[str, tuple[str, str]] = {}
    for i, api in enumerate(settings.apis):
        for key, value in api.environment.items():
            owner = owners.setdefault(key, (api.name, value))
            if owner[1] != value:
                problems.append(
                    f"apis[{i}].environment.{key}: API '{owner[0]}' sets it to another value; "
                    "in-process handlers share one process environment"
                )
        # Handlers often read their environment at import time, as on Lambda.
        os.environ.update(api.environment)
        if api.code_dir is not None and not api.code_dir.is_dir():
            problems.append(f"apis[{i}].code_dir: directory '{api.code_dir}' does not exist")
            continue
        refs: list[tuple[str, str]] = []
        if api.authorizer is not None:
            refs.append((f"apis[{i}].authorizer.handler", api.authorizer.handler))
        for key, spec in api.routes.items():
            handler = spec.handler if isinstance(spec, RouteSpec) else spec
            refs.append((f"apis[{i}].routes.{key}", handler))
        for loc, ref in refs:
            try:
                load_handler(ref, api.code_dir)
            except HandlerLoadError as exc:
                problems.append(f"{loc}: {exc}")
    return problems
