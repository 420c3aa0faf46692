"""Load the YAML configuration and report every problem with its key path.

Messages look like ``apis[0].routes.sendMessage: module 'x' not found``; ``sockway check-config``
prints them and ``sockway serve`` refuses to start with the same list. Schema problems, handler
problems and cross-API conflicts are all reported in one pass.
"""

from __future__ import annotations

import copy
import difflib
import functools
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from sockway.gateway.registry import API_TYPES
from sockway.gateway.settings import Settings
from sockway.runtimes.environment import apply_handler_environment, dev_ca_bundle_path
from sockway.runtimes.factory import HandlerLoadError, check_handler_ref

# Names pydantic puts into error locations that are not config keys: union members, the
# discriminator tag, and the marker of a dict key.
_NOT_KEYS = frozenset(
    {"[key]", *API_TYPES, *(tag for api_type in API_TYPES.values() for tag in api_type.error_tags)}
)


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def format_loc(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _NOT_KEYS or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The settings models an annotation holds (through Optional, Annotated, list, dict)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


@functools.cache
def _all_models() -> dict[str, type[BaseModel]]:
    """Every settings model reachable from ``Settings``, by class name."""
    found: dict[str, type[BaseModel]] = {}
    todo: list[type[BaseModel]] = [Settings]
    while todo:
        model = todo.pop()
        if model.__name__ in found:
            continue
        found[model.__name__] = model
        for field in model.model_fields.values():
            todo += _models_in(field.annotation)
    return found


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    return str(args[0]) if len(args) == 1 else None


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed where ``loc`` points (its last part being the unknown key)."""
    models: list[type[BaseModel]] = [Settings]
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        fields += [f for m in models for f in m.model_fields.values() if f.alias == part]
        if fields:
            models = _models_in(fields[0].annotation) or models
            continue
        tagged = [m for m in models if _tag_of(m) == part]
        if tagged:  # a union member's tag (``websocket``, ``API_KEY``)
            models = tagged
        # else a dict key (a route key, a namespace): the value's models stay
    return sorted({k for m in models for k in _keys_of(m)})


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    key = str(loc[-1])
    close = difflib.get_close_matches(key, _known_keys(loc), n=1, cutoff=0.6)
    return f"unknown key (did you mean '{close[0]}'?)" if close else "unknown key"


def _not_a_mapping(err: Any) -> str:
    """pydantic's "valid dictionary or instance of <Class>", without the class name."""
    model = _all_models().get(str(err.get("ctx", {}).get("class_name", "")))
    if model is not None and "handler" in model.model_fields:
        return "expected a handler (module.function) or a mapping of its settings"
    return "expected a mapping of keys"


def _format_errors(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for err in exc.errors():
        loc = format_loc(err["loc"])
        if err["type"] == "union_tag_invalid":
            raw = err.get("input")
            tag = raw.get("type") if isinstance(raw, dict) else None
            expected = str(err.get("ctx", {}).get("expected_tags", "")).replace("'", "")
            if len(err["loc"]) > 2:  # a nested union (events auth_providers), not an API
                msg = f"unknown type '{tag}' (expected one of: {expected})"
            else:
                msg = f"unknown API type '{tag}' (expected one of: {', '.join(API_TYPES)})"
            line = f"{loc}.type: {msg}"
        elif err["type"] == "union_tag_not_found":
            line = f"{loc}.type: missing (expected one of: {', '.join(API_TYPES)})"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = _unknown_key(tuple(err["loc"]))
            elif err["type"] in ("model_type", "model_attributes_type"):
                msg = _not_a_mapping(err)
            line = f"{loc}: {msg}"
        if line not in problems:
            problems.append(line)
    return problems


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make relative paths relative to the config file's directory, not the CWD."""

    def fix(container: dict[str, Any], key: str) -> None:
        value = container.get(key)
        if isinstance(value, str) and value != "auto" and not Path(value).is_absolute():
            container[key] = str((base / value).resolve())

    fix(raw, "state_dir")
    if isinstance(raw.get("nodejs"), dict):
        fix(raw["nodejs"], "sdk_dir")
    if isinstance(raw.get("tls"), dict):
        fix(raw["tls"], "certificate")
        fix(raw["tls"], "key")
    for api in _raw_apis(raw):
        for container in _code_dir_holders(api):
            fix(container, "code_dir")
        providers = api.get("auth_providers")
        for provider in providers if isinstance(providers, list) else []:
            if isinstance(provider, dict):
                fix(provider, "jwks_file")
    for function in _raw_functions(raw).values():
        fix(function, "code_dir")


def _code_dir_holders(node: Any) -> list[dict[str, Any]]:
    """Every mapping under a raw API that sets ``code_dir`` (the API and its functions)."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if "code_dir" in node:
            found.append(node)
        for value in node.values():
            found += _code_dir_holders(value)
    elif isinstance(node, list):
        for value in node:
            found += _code_dir_holders(value)
    return found


def _raw_functions(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    functions = raw.get("functions")
    if not isinstance(functions, dict):
        return {}
    return {str(k): v for k, v in functions.items() if isinstance(v, dict)}


def _raw_apis(raw: dict[str, Any]) -> list[dict[str, Any]]:
    apis = raw.get("apis")
    return [a if isinstance(a, dict) else {} for a in apis] if isinstance(apis, list) else []


def parse_config(document: Any, base_dir: Path) -> Settings:
    """Validate an already parsed document; raise ``ConfigError`` listing every problem.

    The caller's document is not modified.
    """
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(["(top level): the configuration must be a mapping of keys"])
    raw = copy.deepcopy(document)
    raw.setdefault("state_dir", ".sockway")
    _resolve_paths(raw, base_dir)
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems += _format_errors(exc)
    problems += _check_unique(raw)
    for api_type in API_TYPES.values():
        problems += api_type.check_apis(_raw_apis(raw))
    problems += check_handlers(raw)
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return settings


def load_config(path: Path) -> Settings:
    """Read and validate a YAML configuration file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: cannot read: not UTF-8 text ({exc.reason})"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{path}:{where}: invalid YAML: {problem}"]) from None
    return parse_config(raw, path.parent.resolve())


def _check_unique(raw: dict[str, Any]) -> list[str]:
    """API names are unique; stages are unique per listener (the stage is the URL path)."""
    problems: list[str] = []
    names: dict[str, int] = {}
    stages: dict[str, str] = {}
    event_paths: dict[str, str] = {}
    for i, api in enumerate(_raw_apis(raw)):
        name, stage = api.get("name"), api.get("stage", "dev")
        if api.get("type") == "pusher":
            stage = None  # served under /app/{key} and /apps/{app_id}, not a stage
        if api.get("type") == "events":
            path = f"{api.get('base_path', '')}/event"  # served: {base_path}/event[/realtime]
            if path in event_paths:
                problems.append(
                    f"apis[{i}].base_path: APIs '{event_paths[path]}' and '{name}' both serve "
                    f"{path}; give each events API its own base_path"
                )
            event_paths.setdefault(path, str(name))
            stage = None
        if isinstance(name, str):
            if name in names:
                problems.append(f"apis[{i}].name: two APIs are named '{name}'")
            names.setdefault(name, i)
        if isinstance(stage, str):
            if stage in stages:
                problems.append(
                    f"apis[{i}].stage: APIs '{stages[stage]}' and '{name}' both use stage "
                    f"'{stage}'; the stage is the URL path (/{{stage}}), so it must be unique"
                )
            stages.setdefault(stage, str(name))
    if "/event" in event_paths and "event" in stages:
        problems.append(
            f"apis: websocket API '{stages['event']}' (stage 'event') and events API "
            f"'{event_paths['/event']}' both serve /event; change the stage or the base_path"
        )
    return problems


def has_inprocess_handlers(i: int, api: dict[str, Any]) -> bool:
    """Whether a raw API runs any handler in the gateway process (its ``environment`` then
    applies to the gateway's own environment; process workers get theirs separately)."""
    return any(ref[2] not in ("process", "nodejs") for ref in _handler_refs(i, api))


def _handler_refs(i: int, api: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    api_type = API_TYPES.get(str(api.get("type")))
    return api_type.handler_refs(i, api) if api_type is not None else []


def check_handlers(raw: dict[str, Any]) -> list[str]:
    """Resolve every handler reference of a (resolved) raw document, one line per failure.

    Works on the raw document so that handler problems are reported together with schema
    problems. Each API's ``environment`` is applied first: handlers often read it at import
    time, as on Lambda. In-process handlers share one process environment, so two APIs with
    in-process handlers may not give a variable different values. ``runtime: process`` handlers
    are only looked up, never imported here; their APIs' environments go to their workers.
    """
    problems: list[str] = []
    owners: dict[str, tuple[str, str]] = {}
    environments: list[dict[str, str]] = []
    for i, api in enumerate(_raw_apis(raw)):
        environment = api.get("environment")
        if isinstance(environment, dict) and has_inprocess_handlers(i, api):
            for key, value in environment.items():
                owner = owners.setdefault(str(key), (str(api.get("name")), str(value)))
                if owner[1] != str(value):
                    problems.append(
                        f"apis[{i}].environment.{key}: API '{owner[0]}' sets it to another "
                        "value; in-process handlers share one process environment"
                    )
            environments.append({str(k): str(v) for k, v in environment.items()})
    apis = _raw_apis(raw)
    region = apis[0].get("region") if apis else None
    tls = raw.get("tls")
    auto_tls = isinstance(tls, dict) and tls.get("certificate", "auto") == "auto"
    apply_handler_environment(
        environments,
        region if isinstance(region, str) else "us-east-1",
        dev_ca_bundle_path(Path(str(raw["state_dir"]))) if auto_tls else None,
    )
    for i, api in enumerate(apis):
        code_dir = api.get("code_dir")
        if code_dir is not None and not (isinstance(code_dir, str) and Path(code_dir).is_dir()):
            if isinstance(code_dir, str):
                problems.append(f"apis[{i}].code_dir: directory '{code_dir}' does not exist")
            continue
        for loc, ref, runtime, own_dir in _handler_refs(i, api):
            if own_dir is not None and own_dir != code_dir and not Path(own_dir).is_dir():
                problems.append(f"{loc}: code_dir '{own_dir}' does not exist")
                continue
            try:
                check_handler_ref(ref, Path(own_dir) if own_dir else None, runtime)
            except HandlerLoadError as exc:
                problems.append(f"{loc}: {exc}")
    for name, function in _raw_functions(raw).items():
        handler, own_dir = function.get("handler"), function.get("code_dir")
        if not isinstance(handler, str):
            continue
        if own_dir is not None and not Path(str(own_dir)).is_dir():
            problems.append(f"functions.{name}.code_dir: directory '{own_dir}' does not exist")
            continue
        try:
            runtime = str(function.get("runtime") or "inprocess")
            check_handler_ref(handler, Path(str(own_dir)) if own_dir else None, runtime)
        except HandlerLoadError as exc:
            problems.append(f"functions.{name}.handler: {exc}")
    return problems
