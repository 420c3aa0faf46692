"""``runtime``, ``memory_mb`` and ``reserved_concurrency`` settings (README "Handler runtimes")."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from sockway.gateway.config import ConfigError, has_inprocess_handlers, parse_config
from tests.gateway.test_config import api, unique, write_module


def problems_of(raw: Any, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, base)
    return info.value.problems


def test_runtime_per_api_and_per_handler(tmp_path: Path) -> None:
    mod = write_module(tmp_path / "handlers", unique())
    raw = api(
        mod,
        runtime="process",
        routes={
            "$connect": f"{mod}.handler",
            "here": {"handler": f"{mod}.handler", "runtime": "inprocess", "memory_mb": 256},
        },
        authorizer={"handler": f"{mod}.handler", "reserved_concurrency": 5},
    )
    settings = parse_config({"apis": [raw]}, tmp_path)
    chat = settings.apis[0]
    assert chat.runtime == "process"
    assert chat.routes["$connect"].runtime is None  # falls back to the API's
    assert chat.routes["here"].runtime == "inprocess"
    assert chat.routes["here"].memory_mb == 256
    assert chat.authorizer is not None and chat.authorizer.reserved_concurrency == 5
    assert has_inprocess_handlers(0, chat.model_dump(mode="json"))
    del raw["routes"]["here"]
    assert not has_inprocess_handlers(
        0, parse_config({"apis": [raw]}, tmp_path).apis[0].model_dump(mode="json")
    )


def test_default_runtime_is_inprocess(tmp_path: Path) -> None:
    mod = write_module(tmp_path / "handlers", unique())
    settings = parse_config({"apis": [api(mod)]}, tmp_path)
    assert settings.apis[0].runtime == "inprocess"


def test_process_handlers_are_not_imported_into_the_gateway(tmp_path: Path) -> None:
    mod = unique()
    source = "raise RuntimeError('imported!')\ndef handler(event, context):\n    return {}\n"
    write_module(tmp_path / "handlers", mod, source)
    parse_config({"apis": [api(mod, runtime="process")]}, tmp_path)
    assert mod not in sys.modules
    # The same module in-process is imported, so its import error is reported.
    (line,) = problems_of({"apis": [api(mod)]}, tmp_path)
    assert "RuntimeError: imported!" in line


def test_same_module_name_in_two_process_code_dirs(tmp_path: Path) -> None:
    write_module(tmp_path / "a", "app")
    write_module(tmp_path / "b", "app")
    raw = {
        "apis": [
            api("app", code_dir="a", runtime="process", environment={"TABLE": "a"}),
            api(
                "app",
                name="b",
                stage="b",
                code_dir="b",
                runtime="process",
                environment={"TABLE": "b"},
            ),
        ]
    }
    parse_config(raw, tmp_path)  # neither a module clash nor an environment conflict
    assert os.environ.get("TABLE") is None  # process APIs' environments stay out of the gateway


def test_missing_process_module_is_reported(tmp_path: Path) -> None:
    (tmp_path / "handlers").mkdir()
    missing = unique("missing")
    raw = {"apis": [api("x", runtime="process", routes={"$default": f"{missing}.h"})]}
    (line,) = problems_of(raw, tmp_path)
    assert line.startswith(f"apis[0].routes.$default: module '{missing}' not found in ")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"runtime": "thread"},
            "apis[0].runtime: Input should be 'inprocess', 'process' or 'nodejs'",
        ),
        (
            {"routes": {"$connect": {"handler": "m.h", "runtime": "lambda"}}},
            "apis[0].routes.$connect.runtime: Input should be 'inprocess', 'process' or 'nodejs'",
        ),
        (
            {"routes": {"$connect": {"handler": "m.h", "reserved_concurrency": -1}}},
            "apis[0].routes.$connect.reserved_concurrency: Input should be greater than or equal to 0",
        ),
        (
            {"routes": {"$connect": {"handler": "m.h", "memory_mb": 64}}},
            "apis[0].routes.$connect.memory_mb: Input should be greater than or equal to 128",
        ),
    ],
)
def test_invalid_runtime_settings(tmp_path: Path, overrides: dict[str, Any], expected: str) -> None:
    write_module(tmp_path / "handlers", "m", "def h(event, context):\n    return {}\n")
    problems = problems_of({"apis": [api("m", **overrides)]}, tmp_path)
    assert expected in problems, problems
