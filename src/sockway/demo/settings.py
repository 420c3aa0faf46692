"""The configuration ``sockway serve`` uses when no ``--config`` is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEMO_STAGE = "demo"


def demo_config(listen: str, state_dir: Path) -> dict[str, Any]:
    return {
        "listen": listen,
        "tls": {"certificate": "auto"},
        "state_dir": str(state_dir),
        "apis": [
            {
                "name": "demo",
                "type": "websocket",
                "stage": DEMO_STAGE,
                "routes": {
                    "$connect": "sockway.demo.handlers.connect",
                    "echo": {"handler": "sockway.demo.handlers.echo", "route_response": True},
                    "broadcast": "sockway.demo.handlers.broadcast",
                    "$default": {
                        "handler": "sockway.demo.handlers.default",
                        "route_response": True,
                    },
                },
            }
        ],
    }
