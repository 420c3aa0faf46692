"""Configuration loading and readable errors (gateway/config.py, websocket/settings.py)."""

from __future__ import annotations

import copy
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from sockway.gateway.config import ConfigError, format_loc, load_config, parse_config
from sockway.gateway.settings import Settings, parse_hostport
from sockway.websocket.settings import RouteSpec, WebSocketApi

HANDLER = "def handler(event, context):\n    return {'statusCode': 200}\n"


def unique(prefix: str = "h") -> str:
    """A module name no other test (or earlier import) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def write_module(directory: Path, name: str, source: str = HANDLER) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(source)
    return name


def problems_of(raw: Any, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, base)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


@pytest.fixture
def code(tmp_path: Path) -> Path:
    directory = tmp_path / "handlers"
    directory.mkdir()
    return directory


@pytest.fixture
def mod(code: Path) -> str:
    """A valid handler module in ``code`` (``{mod}.handler``)."""
    return write_module(code, unique())


def api(mod: str, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "chat",
        "type": "websocket",
        "code_dir": "handlers",
        "routes": {"$connect": f"{mod}.handler"},
    }
    raw.update(overrides)
    return raw


# -- valid configurations --------------------------------------------------------------------


def test_issue_example_shape_is_valid(tmp_path: Path, code: Path) -> None:
    connect, disconnect, send, auth = (write_module(code, unique(p)) for p in "cdsa")
    raw = {
        "listen": "127.0.0.1:8080",
        "tls": {"certificate": "auto"},
        "apis": [
            {
                "name": "chat",
                "type": "websocket",
                "stage": "production",
                "route_selection_expression": "$request.body.action",
                "code_dir": "./handlers",
                "environment": {"TABLE_NAME": "chat-connections"},
                "authorizer": {
                    "handler": f"{auth}.handler",
                    "identity_source": [
                        "route.request.header.Auth",
                        "route.request.querystring.token",
                    ],
                },
                "routes": {
                    "$connect": f"{connect}.handler",
                    "$disconnect": f"{disconnect}.handler",
                    "sendmessage": f"{send}.handler",
                    "echo": {"handler": f"{send}.handler", "route_response": True},
                    "$default": {"handler": f"{send}.handler"},
                },
            }
        ],
    }
    settings = parse_config(raw, tmp_path)
    assert isinstance(settings, Settings)
    assert settings.listen == "127.0.0.1:8080"
    assert settings.tls is not None and settings.tls.certificate == "auto"
    assert settings.state_dir == (tmp_path / ".sockway").resolve()
    (chat,) = settings.apis
    assert isinstance(chat, WebSocketApi)
    assert chat.stage == "production"
    assert chat.code_dir == code.resolve()
    assert chat.environment == {"TABLE_NAME": "chat-connections"}
    assert chat.authorizer is not None
    assert chat.authorizer.handler == f"{auth}.handler"
    assert chat.authorizer.identity_source == [
        "route.request.header.Auth",
        "route.request.querystring.token",
    ]
    specs = chat.routes
    assert specs["sendmessage"] == RouteSpec(handler=f"{send}.handler")
    assert specs["sendmessage"].route_response is False
    assert specs["echo"].route_response is True
    assert specs["$default"].handler == f"{send}.handler"
    assert set(specs) == {"$connect", "$disconnect", "sendmessage", "echo", "$default"}
    # Handlers read their environment at import time, as on Lambda.
    assert os.environ["TABLE_NAME"] == "chat-connections"


def test_defaults(tmp_path: Path, mod: str) -> None:
    settings = parse_config({"apis": [api(mod)]}, tmp_path)
    assert settings.listen == "127.0.0.1:8080"
    assert settings.tls is None
    assert settings.log_format == "text"
    assert settings.handler_threads == 64
    chat = settings.apis[0]
    assert chat.stage == "dev"
    assert chat.route_selection_expression == "$request.body.action"
    assert chat.region == "us-east-1"
    assert chat.account_id == "123456789012"
    assert chat.limits.max_message_bytes == 128 * 1024
    assert chat.limits.idle_timeout_s == 600
    assert chat.limits.max_connection_duration_s == 7200
    assert chat.limits.integration_timeout_s == 29
    assert chat.authorizer is None
    assert chat.management.credentials == []
    assert len(chat.effective_api_id) == 10
    assert (
        chat.effective_api_id
        == parse_config({"apis": [api(mod)]}, tmp_path).apis[0].effective_api_id
    )


def test_empty_document_is_the_default_configuration(tmp_path: Path) -> None:
    settings = parse_config(None, tmp_path)
    assert settings.apis == []
    assert settings.state_dir == (tmp_path / ".sockway").resolve()


def test_authorizer_identity_source_default(tmp_path: Path, mod: str) -> None:
    settings = parse_config(
        {"apis": [api(mod, authorizer={"handler": f"{mod}.handler"})]}, tmp_path
    )
    assert settings.apis[0].authorizer is not None
    assert settings.apis[0].authorizer.identity_source == ["route.request.header.Auth"]


def test_relative_paths_resolve_against_the_base_dir(tmp_path: Path, mod: str) -> None:
    raw = {
        "state_dir": "state",
        "tls": {"certificate": "certs/server.pem", "key": "certs/server-key.pem"},
        "apis": [api(mod)],
    }
    settings = parse_config(raw, tmp_path)
    assert settings.state_dir == (tmp_path / "state").resolve()
    assert settings.tls is not None
    assert settings.tls.certificate == (tmp_path / "certs/server.pem").resolve()
    assert settings.tls.key == (tmp_path / "certs/server-key.pem").resolve()


def test_parse_config_does_not_modify_the_callers_document(tmp_path: Path, mod: str) -> None:
    raw = {"apis": [api(mod)]}
    before = copy.deepcopy(raw)
    parse_config(raw, tmp_path)
    assert raw == before


def test_two_apis_on_different_stages(tmp_path: Path, mod: str) -> None:
    raw = {"apis": [api(mod), api(mod, name="other", stage="prod")]}
    settings = parse_config(raw, tmp_path)
    assert [a.stage for a in settings.apis] == ["dev", "prod"]


def test_handler_from_installed_packages_without_code_dir(tmp_path: Path) -> None:
    raw = {"apis": [{"name": "a", "type": "websocket", "routes": {"x": "json.dumps"}}]}
    settings = parse_config(raw, tmp_path)
    assert settings.apis[0].code_dir is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:8080", ("::1", 8080)),
        (":8080", ("0.0.0.0", 8080)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_parse_hostport(value: str, expected: tuple[str, int]) -> None:
    assert parse_hostport(value) == expected


@pytest.mark.parametrize("value", ["8080", "host", "host:", "host:port", "h:-1"])
def test_parse_hostport_rejects(value: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        parse_hostport(value)


def test_parse_hostport_out_of_range_port_says_so() -> None:
    with pytest.raises(ValueError, match=r"^port 65536 is out of range \(0-65535"):
        parse_hostport("h:65536")


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("apis", 0, "routes", "sendMessage"), "apis[0].routes.sendMessage"),
        (("apis", 0, "websocket", "rout"), "apis[0].rout"),
        (("apis", 1, "routes", "a", "foo"), "apis[1].routes.a.foo"),
        (("apis", 1, "routes", "$x", "[key]"), "apis[1].routes.$x"),
        (("listen",), "listen"),
        ((), "(top level)"),
    ],
)
def test_format_loc(loc: tuple[int | str, ...], expected: str) -> None:
    assert format_loc(loc) == expected


# -- handler problems ---------------------------------------------------------------------


def test_missing_module(tmp_path: Path, code: Path, mod: str) -> None:
    missing = unique("missing")
    raw = {"apis": [api(mod, routes={"sendMessage": f"{missing}.handler"})]}
    assert problems_of(raw, tmp_path) == [
        f"apis[0].routes.sendMessage: module '{missing}' not found in {code.resolve()}"
    ]


def test_missing_function(tmp_path: Path, mod: str) -> None:
    raw = {"apis": [api(mod, routes={"sendMessage": f"{mod}.nope"})]}
    assert problems_of(raw, tmp_path) == [
        f"apis[0].routes.sendMessage: module '{mod}' has no function 'nope'"
    ]


def test_module_raising_at_import(tmp_path: Path, code: Path, mod: str) -> None:
    bad = write_module(code, unique("bad"), "raise RuntimeError('boom at import')\n")
    raw = {"apis": [api(mod, routes={"sendMessage": f"{bad}.handler"})]}
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith(f"apis[0].routes.sendMessage: module '{bad}' failed to import")
    assert "RuntimeError: boom at import" in line


def test_module_importing_a_missing_dependency(tmp_path: Path, code: Path, mod: str) -> None:
    dep = unique("dep")
    bad = write_module(code, unique("bad"), f"import {dep}\n")
    raw = {"apis": [api(mod, routes={"sendMessage": f"{bad}.handler"})]}
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith(f"apis[0].routes.sendMessage: module '{bad}' failed to import")
    assert dep in line


def test_module_with_a_syntax_error(tmp_path: Path, code: Path, mod: str) -> None:
    bad = write_module(code, unique("bad"), "def handler(:\n")
    raw = {"apis": [api(mod, routes={"x": f"{bad}.handler"})]}
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith(f"apis[0].routes.x: module '{bad}' failed to import: SyntaxError")


def test_handler_that_is_not_callable(tmp_path: Path, code: Path, mod: str) -> None:
    name = write_module(code, unique("val"), "handler = 5\n")
    raw = {"apis": [api(mod, routes={"x": f"{name}.handler"})]}
    assert problems_of(raw, tmp_path) == [f"apis[0].routes.x: '{name}.handler' is not callable"]


def test_handler_reference_without_module(tmp_path: Path, mod: str) -> None:
    raw = {"apis": [api(mod, routes={"x": "handler"})]}
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith("apis[0].routes.x: handler 'handler' must be written as module.function")


def test_missing_authorizer_module(tmp_path: Path, mod: str) -> None:
    missing = unique("auth")
    raw = {"apis": [api(mod, authorizer={"handler": f"{missing}.handler"})]}
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith(f"apis[0].authorizer.handler: module '{missing}' not found")


def test_long_form_route_with_missing_module(tmp_path: Path, mod: str) -> None:
    missing = unique("missing")
    routes = {"echo": {"handler": f"{missing}.handler", "route_response": True}}
    (line,) = problems_of({"apis": [api(mod, routes=routes)]}, tmp_path)
    assert line.startswith(f"apis[0].routes.echo: module '{missing}' not found")


def test_missing_code_dir(tmp_path: Path, mod: str) -> None:
    raw = {"apis": [api(mod, code_dir="nowhere")]}
    assert problems_of(raw, tmp_path) == [
        f"apis[0].code_dir: directory '{(tmp_path / 'nowhere').resolve()}' does not exist"
    ]


def test_handler_problems_in_the_second_api(tmp_path: Path, mod: str) -> None:
    missing = unique("missing")
    raw = {"apis": [api(mod), api(mod, name="b", stage="b", routes={"$default": f"{missing}.h"})]}
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith(f"apis[1].routes.$default: module '{missing}' not found")


def test_conflicting_environment_between_apis(tmp_path: Path, mod: str) -> None:
    raw = {
        "apis": [
            api(mod, environment={"TABLE": "a"}),
            api(mod, name="b", stage="b", environment={"TABLE": "b"}),
        ]
    }
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith("apis[1].environment.TABLE: API 'chat' sets it to another value")


# -- schema problems ------------------------------------------------------------------------


def test_unknown_api_key(tmp_path: Path, mod: str) -> None:
    raw = {"apis": [api(mod, rout={"x": "y"})]}
    assert problems_of(raw, tmp_path) == ["apis[0].rout: unknown key (did you mean 'routes'?)"]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems_of({"lisen": "127.0.0.1:1"}, tmp_path) == [
        "lisen: unknown key (did you mean 'listen'?)"
    ]


def test_unknown_key_in_limits_and_tls(tmp_path: Path, mod: str) -> None:
    raw = {"tls": {"certficate": "auto"}, "apis": [api(mod, limits={"idle_timeout": 5})]}
    assert sorted(problems_of(raw, tmp_path)) == [
        "apis[0].limits.idle_timeout: unknown key (did you mean 'idle_timeout_s'?)",
        "tls.certficate: unknown key (did you mean 'certificate'?)",
    ]


def test_unknown_key_in_long_form_route_is_one_line(tmp_path: Path, mod: str) -> None:
    # The route is a mapping, so "should be a valid string" (the short form) is noise.
    raw = {"apis": [api(mod, routes={"a": {"handler": f"{mod}.handler", "foo": 1}})]}
    assert problems_of(raw, tmp_path) == ["apis[0].routes.a.foo: unknown key"]


@pytest.mark.parametrize("listen", ["nope", "127.0.0.1", "127.0.0.1:http"])
def test_bad_listen(tmp_path: Path, listen: str) -> None:
    assert problems_of({"listen": listen}, tmp_path) == [
        f"listen: '{listen}' is not host:port (e.g. 127.0.0.1:8080)"
    ]


def test_listen_port_out_of_range(tmp_path: Path) -> None:
    assert problems_of({"listen": "127.0.0.1:99999"}, tmp_path) == [
        "listen: port 99999 is out of range (0-65535; 0 picks a free port)"
    ]


def test_bad_tls_listen(tmp_path: Path) -> None:
    (line,) = problems_of({"tls": {"listen": "x"}}, tmp_path)
    assert line.startswith("tls.listen: 'x' is not host:port")


def test_tls_certificate_without_key(tmp_path: Path) -> None:
    (line,) = problems_of({"tls": {"certificate": "server.pem"}}, tmp_path)
    assert line.startswith("tls: a certificate file needs its key file")


def test_tls_auto_with_key(tmp_path: Path) -> None:
    (line,) = problems_of({"tls": {"certificate": "auto", "key": "k.pem"}}, tmp_path)
    assert line.startswith("tls: 'key' is only used with a certificate file")


def test_unknown_api_type(tmp_path: Path) -> None:
    assert problems_of({"apis": [{"name": "a", "type": "graphql"}]}, tmp_path) == [
        "apis[0].type: unknown API type 'graphql' (expected one of: websocket, pusher, events)"
    ]


def test_missing_api_type(tmp_path: Path) -> None:
    assert problems_of({"apis": [{"name": "a"}]}, tmp_path) == [
        "apis[0].type: missing (expected one of: websocket, pusher, events)"
    ]


def test_duplicate_stage_names_the_second_api(tmp_path: Path, mod: str) -> None:
    raw = {"apis": [api(mod), api(mod, name="other")]}
    (line,) = problems_of(raw, tmp_path)
    assert "both use stage 'dev'" in line
    assert line.startswith("apis[1].stage: ")


def test_duplicate_api_name_names_the_second_api(tmp_path: Path, mod: str) -> None:
    raw = {"apis": [api(mod), api(mod, stage="prod")]}
    (line,) = problems_of(raw, tmp_path)
    assert "two APIs are named 'chat'" in line
    assert line.startswith("apis[1].name: ")


@pytest.mark.parametrize("key", ["$foo", "$Connect", "$"])
def test_bad_route_key(tmp_path: Path, mod: str, key: str) -> None:
    raw = {"apis": [api(mod, routes={key: f"{mod}.handler"})]}
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith("apis[0].routes")
    assert f"'{key}'" in line
    assert "only $connect, $disconnect and $default may start with '$'" in line


def test_empty_route_key(tmp_path: Path, mod: str) -> None:
    (line,) = problems_of({"apis": [api(mod, routes={"": f"{mod}.handler"})]}, tmp_path)
    assert line.startswith("apis[0].routes")
    assert "must not be empty" in line


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("$request.header.x", "unsupported variable '$request.header.x'"),
        ("${request.body.action", "unclosed"),
    ],
)
def test_bad_route_selection_expression(
    tmp_path: Path, mod: str, expression: str, fragment: str
) -> None:
    raw = {"apis": [api(mod, route_selection_expression=expression)]}
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith("apis[0].route_selection_expression: ")
    assert fragment in line


def test_bad_identity_source(tmp_path: Path, mod: str) -> None:
    authorizer = {"handler": f"{mod}.handler", "identity_source": ["header.Auth"]}
    (line,) = problems_of({"apis": [api(mod, authorizer=authorizer)]}, tmp_path)
    assert line.startswith("apis[0].authorizer.identity_source: unsupported identity source")


@pytest.mark.parametrize(
    ("overrides", "path"),
    [
        ({"stage": "bad stage"}, "apis[0].stage"),
        ({"name": "bad name!"}, "apis[0].name"),
        ({"api_id": "UPPERCASE1"}, "apis[0].api_id"),
        ({"account_id": "12"}, "apis[0].account_id"),
        ({"memory_mb": 64}, "apis[0].memory_mb"),
        ({"limits": {"idle_timeout_s": 0}}, "apis[0].limits.idle_timeout_s"),
        ({"limits": {"outbox_max_bytes": -1}}, "apis[0].limits.outbox_max_bytes"),
    ],
)
def test_bad_api_values_name_their_key(
    tmp_path: Path, mod: str, overrides: dict[str, Any], path: str
) -> None:
    (line,) = problems_of({"apis": [api(mod, **overrides)]}, tmp_path)
    assert line.startswith(f"{path}: ")


def test_bad_route_response_value(tmp_path: Path, mod: str) -> None:
    routes = {"a": {"handler": f"{mod}.handler", "route_response": "maybe"}}
    problems = problems_of({"apis": [api(mod, routes=routes)]}, tmp_path)
    assert problems[0].startswith("apis[0].routes.a.route_response: ")


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    assert problems_of([1, 2], tmp_path) == [
        "(top level): the configuration must be a mapping of keys"
    ]


def test_apis_not_a_list(tmp_path: Path) -> None:
    (line,) = problems_of({"apis": {"chat": {}}}, tmp_path)
    assert line.startswith("apis: ")


# -- every problem at once ----------------------------------------------------------------


def test_two_bad_routes_give_two_lines(tmp_path: Path, mod: str) -> None:
    one, two = unique("m1"), unique("m2")
    raw = {"apis": [api(mod, routes={"a": f"{one}.handler", "b": f"{two}.handler"})]}
    problems = problems_of(raw, tmp_path)
    assert len(problems) == 2
    assert problems[0].startswith(f"apis[0].routes.a: module '{one}' not found")
    assert problems[1].startswith(f"apis[0].routes.b: module '{two}' not found")


def test_two_bad_route_keys_give_two_lines(tmp_path: Path, mod: str) -> None:
    routes = {"$foo": f"{mod}.handler", "$bar": f"{mod}.handler"}
    problems = problems_of({"apis": [api(mod, routes=routes)]}, tmp_path)
    assert len(problems) == 2
    assert any("'$foo'" in p for p in problems)
    assert any("'$bar'" in p for p in problems)


def test_schema_problems_everywhere_are_all_reported(tmp_path: Path, mod: str) -> None:
    raw = {
        "listen": "x",
        "apis": [
            api(mod, rout=1, stage="bad stage"),
            api(mod, name="b", stage="b", routes={"$x": f"{mod}.handler"}),
        ],
    }
    problems = problems_of(raw, tmp_path)
    assert len(problems) == 4
    assert any(p.startswith("listen: ") for p in problems)
    assert "apis[0].rout: unknown key (did you mean 'routes'?)" in problems
    assert any(p.startswith("apis[0].stage: ") for p in problems)
    assert any(p.startswith("apis[1].routes") and "'$x'" in p for p in problems)


def test_schema_and_handler_problems_are_reported_together(tmp_path: Path, mod: str) -> None:
    missing = unique("missing")
    raw = {
        "apis": [
            api(mod, limits={"idle_timeout_s": -1}, routes={"sendMessage": f"{missing}.handler"})
        ]
    }
    problems = problems_of(raw, tmp_path)
    assert any(p.startswith("apis[0].limits.idle_timeout_s: ") for p in problems)
    assert any(p.startswith("apis[0].routes.sendMessage: module ") for p in problems)


# -- load_config: files ---------------------------------------------------------------------


def test_load_config_from_yaml(tmp_path: Path, code: Path) -> None:
    send = write_module(code, unique("send"))
    path = tmp_path / "sockway.yaml"
    path.write_text(
        f"""\
listen: 127.0.0.1:0
tls: {{certificate: auto}}
apis:
  - name: chat
    type: websocket
    stage: production
    route_selection_expression: $request.body.action
    code_dir: ./handlers
    environment: {{TABLE_NAME: chat-connections}}
    routes:
      $connect: {send}.handler
      sendmessage: {send}.handler
      echo:
        handler: {send}.handler
        route_response: true
"""
    )
    settings = load_config(path)
    chat = settings.apis[0]
    assert chat.code_dir == code.resolve()
    assert chat.routes["echo"].route_response is True
    assert settings.state_dir == (tmp_path / ".sockway").resolve()


def test_load_config_resolves_relative_to_the_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    name = write_module(project / "src", unique())
    (project / "gw.yaml").write_text(
        f"apis:\n  - name: a\n    type: websocket\n    code_dir: src\n"
        f"    routes: {{$default: {name}.handler}}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_config(Path("../project/gw.yaml"))
    assert settings.apis[0].code_dir == (project / "src").resolve()


def test_load_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path).apis == []


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "listen: 127.0.0.1:8080\napis:\n  - name: chat\n    type: websocket\n   routes: [\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (line,) = info.value.problems
    assert line.startswith(f"{path}: line 5, column 4: invalid YAML: ")


def test_unterminated_flow_sequence(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("listen: 127.0.0.1:8080\nkey: [1, 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (line,) = info.value.problems
    assert line.startswith(f"{path}: line 3, column 1: invalid YAML: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [f"{path}: cannot read: No such file or directory"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    (line,) = info.value.problems
    assert line.startswith(f"{tmp_path}: cannot read: ")


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"listen: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (line,) = info.value.problems
    assert line.startswith(f"{path}: ")


def test_yaml_list_document(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == ["(top level): the configuration must be a mapping of keys"]


def test_yaml_file_with_two_missing_handlers(tmp_path: Path, code: Path) -> None:
    ok = write_module(code, unique())
    one, two = unique("m1"), unique("m2")
    path = tmp_path / "sockway.yaml"
    path.write_text(
        "apis:\n  - name: chat\n    type: websocket\n    code_dir: handlers\n    routes:\n"
        f"      $connect: {ok}.handler\n      sendMessage: {one}.handler\n"
        f"      join: {two}.handler\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"apis[0].routes.sendMessage: module '{one}' not found in {code.resolve()}",
        f"apis[0].routes.join: module '{two}' not found in {code.resolve()}",
    ]


def test_the_supervisor_makes_the_certificate_its_workers_ask_for(tmp_path: Path) -> None:
    """``--workers N``: the supervisor's development certificate covers what each worker's
    gateway needs (``tls.names`` too, as project mode sets them), so no worker rewrites it
    while the others read it."""
    from sockway.gateway.supervisor import Supervisor
    from sockway.transport.tls import auto_certificate

    settings = parse_config(
        {
            "listen": "127.0.0.1:0",
            "state_dir": str(tmp_path / "state"),
            "tls": {"certificate": "auto", "names": ["*.execute-api.us-east-1.amazonaws.com"]},
            "apis": [{"name": "t", "type": "websocket", "stage": "dev"}],
        },
        tmp_path,
    )
    Supervisor(settings, 2, lambda fd, port, tls_port: [])._prepare_tls()
    made = (tmp_path / "state" / "tls" / "server.pem").read_bytes()
    auto_certificate(settings.state_dir, settings.auto_tls_hosts())  # what a worker does
    assert (tmp_path / "state" / "tls" / "server.pem").read_bytes() == made
