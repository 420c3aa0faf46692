"""serverless.yml projects (apigw spec §10.2); see ``read_serverless``."""

from __future__ import annotations

from pathlib import Path

from sockway.projects.problems import ProjectError
from sockway.projects.template import Project


def read_serverless(
    path: Path, *, local_host: str, state_dir: Path, stage: str | None = None
) -> Project:
    raise ProjectError([f"{path}: serverless.yml projects are not supported yet"])
