"""One function behind several slots is one integration (``IntegrationFactory.build``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from sockway.runtimes.factory import FunctionSpec, IntegrationFactory
from tests.conftest import write_handlers


async def test_the_same_function_is_built_once(tmp_path: Path) -> None:
    code = write_handlers(tmp_path / "h", {"sharedfn.py": "def handler(e, c):\n    return 1\n"})
    factory = IntegrationFactory(ThreadPoolExecutor(1))
    try:
        spec = FunctionSpec(
            ref="sharedfn.handler",
            function_name="chat-send",
            code_dir=code,
            environment={"A": "1"},
            runtime="process",
            timeout_s=3,
            reserved_concurrency=2,
        )
        first = factory.build(spec)
        # Another route of the same function (its own timeout): the same pool and limit.
        assert factory.build(replace(spec, timeout_s=29, environment={"A": "1"})) is first
        # A different name, environment or limit is another function.
        assert factory.build(replace(spec, function_name="chat-other")) is not first
        assert factory.build(replace(spec, environment={"A": "2"})) is not first
        assert factory.build(replace(spec, reserved_concurrency=3)) is not first
    finally:
        await factory.aclose()
