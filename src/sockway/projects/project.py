"""What a project reader produces (``Project``), where a CDK output's template is, and the
rewrite of AWS host names to where sockway serves them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sockway.projects import appsync, dynamodb
from sockway.projects.lambda_functions import FunctionDef
from sockway.projects.problems import ProjectError


@dataclass
class Project:
    """A translated project: ``config`` is a sockway configuration document."""

    source: Path
    config: dict[str, Any]
    tables: list[dynamodb.TableDef] = field(default_factory=list)
    api_keys: list[appsync.ApiKeyDef] = field(default_factory=list)
    functions: dict[str, FunctionDef] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)

    def add_environment(self, environment: dict[str, str]) -> None:
        """Give every API's handlers these variables (local services, test credentials)."""
        for api in self.config["apis"]:
            api["environment"] = {**api.get("environment", {}), **environment}
        for function in self.config.get("functions", {}).values():
            function["environment"] = {**function.get("environment", {}), **environment}

    def summary(self) -> list[str]:
        """What ``serve`` and ``check-config`` print about the project, once."""
        lines = [
            f"project {self.source}: {len(self.config['apis'])} API(s), "
            f"{len(self.functions)} function(s), {len(self.tables)} table(s)"
        ]
        if self.ignored:
            lines.append("  not emulated (no local effect):")
            lines += [f"    - {line}" for line in self.ignored]
        if self.warnings:
            lines.append("  note:")
            lines += [f"    - {line}" for line in self.warnings]
        if self.outputs:
            lines.append("  outputs:")
            lines += [f"    {k}: {v}" for k, v in self.outputs.items()]
        return lines


def find_template(path: Path) -> Path:
    """``path`` itself, or the one ``*.template.json`` of a ``cdk.out`` directory."""
    if not path.is_dir():
        return path
    candidates = sorted(path.glob("*.template.json"))
    manifest = path / "manifest.json"
    if len(candidates) > 1 and manifest.is_file():
        stacks = _manifest_stacks(manifest)
        candidates = [c for c in candidates if c.name in stacks] or candidates
    if len(candidates) != 1:
        names = ", ".join(c.name for c in candidates) or "none"
        raise ProjectError(
            [
                f"{path}: expected one *.template.json (cdk synth output), found {names}; "
                "give the template file"
            ]
        )
    return candidates[0]


def _manifest_stacks(manifest: Path) -> set[str]:
    try:
        artifacts = json.loads(manifest.read_text()).get("artifacts", {})
    except (OSError, ValueError):
        return set()
    return {
        a.get("properties", {}).get("templateFile", "")
        for a in artifacts.values()
        if isinstance(a, dict) and a.get("type") == "aws:cloudformation:stack"
    }


_HOSTS = (
    r"[a-z0-9]{10}\.execute-api\.{region}\.amazonaws\.com",
    r"[a-z0-9]{26}\.appsync-api\.{region}\.amazonaws\.com",
    r"[a-z0-9]{26}\.appsync-realtime-api\.{region}\.amazonaws\.com",
)


def localise_hosts(text: str, region: str, local_host: str) -> str:
    """``{id}.execute-api.{region}.amazonaws.com`` (and AppSync's hosts) → ``local_host``."""
    for pattern in _HOSTS:
        text = re.sub(pattern.replace("{region}", re.escape(region)), local_host, text)
    return text
