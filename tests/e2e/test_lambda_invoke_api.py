"""The Lambda Invoke API for ``functions:`` (issue 14): boto3's ``lambda.invoke`` against a
real gateway, every invocation type and error shape botocore parses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import StartGateway, write_handlers

FUNCS = """
import os
import time

CALLS = []


def add(event, context):
    return {"sum": event["a"] + event["b"], "name": context.function_name}


def record(event, context):
    CALLS.append(event)
    return None


def boom(event, context):
    raise ValueError("no luck")


def slow(event, context):
    time.sleep(5)
"""


def _client(port: int) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.mark.timeout(60)
async def test_invoke_like_lambda(tmp_path: Path, start_gateway: StartGateway) -> None:
    code = write_handlers(tmp_path / "fns", {"invokefns.py": FUNCS})
    functions = {
        name: {"handler": f"invokefns.{name}", "code_dir": str(code)}
        for name in ("add", "record", "boom")
    }
    functions["slow"] = {"handler": "invokefns.slow", "code_dir": str(code), "timeout_s": 0.2}
    gw = await start_gateway({"functions": functions})
    client = _client(gw.port)

    def invoke(name: str, payload: Any, **extra: Any) -> Any:
        return client.invoke(FunctionName=name, Payload=json.dumps(payload).encode(), **extra)

    answer = await asyncio.to_thread(invoke, "add", {"a": 2, "b": 3})
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == {"sum": 5, "name": "add"}
    assert answer["ExecutedVersion"] == "$LATEST"
    arn = "arn:aws:lambda:us-east-1:123456789012:function:add:$LATEST"
    answer = await asyncio.to_thread(invoke, arn, {"a": 1, "b": 1})
    assert json.loads(answer["Payload"].read())["sum"] == 2

    failed = await asyncio.to_thread(invoke, "boom", {})
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "no luck")
    timed_out = await asyncio.to_thread(invoke, "slow", {})
    assert json.loads(timed_out["Payload"].read())["errorType"] == "Sandbox.Timedout"

    queued = await asyncio.to_thread(invoke, "record", {"n": 1}, InvocationType="Event")
    assert queued["StatusCode"] == 202
    import sys

    calls = sys.modules["invokefns"].CALLS
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not calls:
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    assert calls == [{"n": 1}]

    with pytest.raises(client.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(invoke, "nope", {})
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(invoke, "add:live", {})
