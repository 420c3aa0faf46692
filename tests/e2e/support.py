"""Handlers and helpers shared by the end-to-end tests."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import write_handlers

# One handler module driven by the test through the query string and the message body.
HANDLERS = """
import json
import time

EVENTS = []


def connect(event, context):
    EVENTS.append(event)
    qs = event.get("queryStringParameters") or {}
    if "status" in qs:
        return {"statusCode": int(qs["status"])}
    if "raise" in qs:
        raise RuntimeError("connect failed on purpose")
    if "proto" in qs:
        return {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": qs["proto"]}}
    return {"statusCode": 200}


def disconnect(event, context):
    EVENTS.append(event)
    return {"statusCode": 200}


def echo(event, context):
    EVENTS.append(event)
    return {"statusCode": 200, "body": event["body"]}


def context_info(event, context):
    return {"statusCode": 200, "body": json.dumps({
        "function_name": context.function_name,
        "aws_request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "log_group_name": context.log_group_name,
        "request_id_matches": context.aws_request_id == event["requestContext"]["requestId"],
    })}


def fail(event, context):
    raise ValueError("handler bug on purpose")


def slow(event, context):
    time.sleep(json.loads(event["body"]).get("seconds", 1))
    return {"statusCode": 200, "body": "slow done"}


def oneway(event, context):
    EVENTS.append(event)
    return {"statusCode": 200, "body": "must not be sent"}


def default(event, context):
    EVENTS.append(event)
    return {"statusCode": 200, "body": "default:" + event["body"]}
"""


def api(code_dir: Path, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "t",
        "type": "websocket",
        "stage": "dev",
        "code_dir": str(code_dir),
        "routes": {
            "$connect": "rec.connect",
            "$disconnect": "rec.disconnect",
            "echo": {"handler": "rec.echo", "route_response": True},
            "context": {"handler": "rec.context_info", "route_response": True},
            "fail": "rec.fail",
            "slow": {"handler": "rec.slow", "route_response": True},
            "quick": {"handler": "rec.slow", "route_response": True, "timeout_s": 0.3},
            "oneway": "rec.oneway",
            "$default": {"handler": "rec.default", "route_response": True},
        },
    }
    config.update(overrides)
    return config


def handlers_dir(tmp_path: Path, source: str = HANDLERS, name: str = "rec.py") -> Path:
    return write_handlers(tmp_path / "handlers", {name: source})


def recorded(module: str = "rec") -> list[dict[str, Any]]:
    return sys.modules[module].EVENTS  # type: ignore[no-any-return]


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["requestContext"]["eventType"] == event_type]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
