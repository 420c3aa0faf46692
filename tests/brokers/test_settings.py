"""The ``broker:`` and ``workers:`` settings (brokers/settings.py) and ``build_broker`` (issue 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sockway.brokers.factory import build_broker
from sockway.brokers.memory import MemoryBroker
from sockway.brokers.settings import BrokerSettings
from sockway.gateway.config import ConfigError, parse_config


def problems_of(raw: dict[str, Any], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw, tmp_path)
    return info.value.problems


def test_defaults_no_broker_one_worker(tmp_path: Path) -> None:
    settings = parse_config({}, tmp_path)
    assert settings.broker is None
    assert settings.workers == 1
    assert isinstance(build_broker(settings.broker), MemoryBroker)


def test_broker_defaults_and_every_key(tmp_path: Path) -> None:
    settings = parse_config({"broker": {"url": "redis://10.0.0.5"}}, tmp_path)
    assert settings.broker == BrokerSettings(
        url="redis://10.0.0.5",
        key_prefix="sockway",
        heartbeat_s=1.0,
        node_ttl_s=5.0,
        unsubscribe_grace_s=2.0,
        sentinel_master=None,
    )
    raw = {
        "workers": 4,
        "broker": {
            "url": "rediss://app:s3cret@redis.internal:6380/2",
            "key_prefix": "prod:eu-1",
            "heartbeat_s": 0.5,
            "node_ttl_s": 3,
            "unsubscribe_grace_s": 0,
            "sentinel_master": "mymaster",
        },
    }
    settings = parse_config(raw, tmp_path)
    assert settings.workers == 4
    assert settings.broker is not None
    assert settings.broker.key_prefix == "prod:eu-1"
    assert settings.broker.sentinel_master == "mymaster"
    assert "s3cret" not in repr(settings)  # the URL may hold a password


@pytest.mark.parametrize(
    ("broker", "problem"),
    [
        ({}, "broker.url: Field required"),
        (
            {"url": "http://redis:6379"},
            "broker.url: 'http://redis:6379' is not a Redis URL (redis://host:6379/0 or rediss://…)",
        ),
        ({"url": "redis://"}, "broker.url: 'redis://': the URL names no host"),
        (
            {"url": "redis://u:hunter2@h:99999"},
            "broker.url: 'redis://u:***@h:99999': the port is not a number 0-65535",
        ),
        ({"url": "redis://h/cache"}, "broker.url: 'redis://h/cache': the path must be"),
        (
            {"url": "redis://h", "key_prefix": "has space"},
            "broker.key_prefix: must be 1-64 letters, digits, '_', '-', '.' or ':'",
        ),
        (
            {"url": "redis://h", "heartbeat_s": 3},
            "broker.node_ttl_s: must be greater than 2 * heartbeat_s (5 <= 2 * 3)",
        ),
        ({"url": "redis://h", "heartbeat_s": 0}, "broker.heartbeat_s: Input should be greater"),
        ({"url": "redis://h", "colour": "red"}, "broker.colour: unknown key"),
    ],
)
def test_broker_errors_have_key_paths(tmp_path: Path, broker: dict[str, Any], problem: str) -> None:
    problems = problems_of({"broker": broker}, tmp_path)
    assert len(problems) == 1 and problems[0].startswith(problem), problems
    assert "hunter2" not in problems[0]


def test_workers_bounds_and_broker_requirement(tmp_path: Path) -> None:
    assert problems_of({"workers": 2}, tmp_path) == [
        "workers: 2 worker processes need a 'broker' (broker: {url: redis://…}): without one "
        "the workers would not share connections and channels"
    ]
    assert problems_of({"workers": 0}, tmp_path) == [
        "workers: Input should be greater than or equal to 1"
    ]
    # An invalid broker is reported once, not also as "workers need a broker".
    assert problems_of({"workers": 2, "broker": {"url": "nope"}}, tmp_path) == [
        "broker.url: 'nope' is not a Redis URL (redis://host:6379/0 or rediss://…)"
    ]


def test_build_broker_with_a_broker_section(tmp_path: Path) -> None:
    settings = parse_config({"broker": {"url": "redis://127.0.0.1:6379"}}, tmp_path)
    from sockway.brokers.redis import RedisBroker

    broker = build_broker(settings.broker)
    assert isinstance(broker, RedisBroker)
    assert isinstance(broker.node_id, str) and broker.node_id
