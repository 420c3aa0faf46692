"""The package layout of docs/architecture.md, held as a standing check.

Each front door (websocket/, events/, pusher/) is one package; the shared layers sit below them
and the assembly (gateway/) above. These tests read every module's imports (``ast``, so an
import inside a function counts too) and fail when an arrow points the wrong way. The pure
modules — core/ and each front door's wire modules — are imported in a fresh interpreter and
must not pull in sockets, TLS, the event loop or any network library.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "sockway"

FRONT_DOORS = {"websocket", "events", "pusher"}

# What each package may import from sockway (besides itself), as docs/architecture.md draws it.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "observability": set(),
    "transport": set(),
    "brokers": set(),
    "runtimes": set(),
    "frontdoor": {"core", "transport", "brokers", "runtimes", "observability"},
    "websocket": {"core", "transport", "brokers", "runtimes", "frontdoor", "observability"},
    "events": {"core", "transport", "brokers", "runtimes", "frontdoor", "observability"},
    "pusher": {"core", "transport", "brokers", "runtimes", "frontdoor", "observability"},
    # The live console: above the doors' contract, beside the doors; it imports none of them.
    "console": {"core", "transport", "brokers", "runtimes", "frontdoor", "observability"},
    "gateway": {
        "core",
        "transport",
        "brokers",
        "runtimes",
        "frontdoor",
        "observability",
        "console",
        *FRONT_DOORS,
    },
    # Readers of users' projects (SAM / CloudFormation / CDK, serverless.yml): they translate a
    # project into the configuration document gateway/ validates.
    "projects": {"gateway", "runtimes"},
}

# Sans-I/O modules: importing one must not import any of FORBIDDEN.
PURE_MODULES = [
    "sockway.core.channels",
    "sockway.core.connection",
    "sockway.core.frames",
    "sockway.core.ids",
    "sockway.core.node",
    "sockway.core.presence",
    "sockway.websocket.wire",
    "sockway.websocket.events",
    "sockway.websocket.routing",
    "sockway.websocket.authorizer",
    "sockway.events.wire",
    "sockway.events.handler_events",
    "sockway.pusher.wire",
    "sockway.pusher.channels",
    "sockway.pusher.signatures",
    "sockway.projects.intrinsics",
]
FORBIDDEN = ["socket", "ssl", "asyncio", "aiohttp", "picows", "redis", "botocore", "boto3", "http"]


def _sockway_imports(path: Path) -> set[str]:
    """The top-level sockway packages that the module at ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the house writes them absolute"
            names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "sockway" and len(parts) > 1:
                found.add(parts[1])
    return found


def _packages() -> list[str]:
    return sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())


def test_every_package_is_placed_in_the_layout() -> None:
    # A new package must be given its place (and a line in docs/architecture.md).
    unplaced = set(_packages()) - set(ALLOWED) - {"demo"}
    assert not unplaced, f"packages missing from the layout: {sorted(unplaced)}"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down_only(package: str) -> None:
    wrong: list[str] = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for target in _sockway_imports(path) - {package}:
            if target not in ALLOWED[package]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports sockway.{target}")
    assert not wrong, "\n".join(wrong)


def test_no_front_door_imports_another() -> None:
    # The same rule as above, said the way the issue says it, so a loosened ALLOWED shows up.
    for door in sorted(FRONT_DOORS):
        for path in (PACKAGE / door).rglob("*.py"):
            others = _sockway_imports(path) & (FRONT_DOORS - {door})
            assert not others, f"{path.relative_to(PACKAGE)} imports {sorted(others)}"


def test_pure_modules_import_no_io() -> None:
    # One fresh interpreter per module: what one module drags in must not hide another's.
    probe = (
        "import importlib, json, sys\n"
        "importlib.import_module(sys.argv[1])\n"
        f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))\n"
    )
    for module in PURE_MODULES:
        out = subprocess.run(
            [sys.executable, "-c", probe, module], capture_output=True, text=True, check=True
        ).stdout
        assert json.loads(out) == [], f"{module} imports {out.strip()}"


# DESIGN.md: "split past ~400 lines or when two layers mix"; the hard stop leaves room for the
# "~" and fails a module that has clearly outgrown one concern.
MAX_MODULE_LINES = 450


def test_modules_stay_small() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert sizes, "no modules found"
    too_big = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not too_big, f"split these modules (over {MAX_MODULE_LINES} lines): {too_big}"
