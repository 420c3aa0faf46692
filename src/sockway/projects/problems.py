"""What reading a project found: the problems that stop it and what is not emulated."""

from __future__ import annotations

from dataclasses import dataclass, field

from sockway.gateway.config import ConfigError


class ProjectError(ConfigError):
    """The project cannot be served as written; one line per problem, each naming the logical
    id (or key) and the property path (``ConnectRoute.Properties.AuthorizationType: …``)."""


@dataclass
class Findings:
    """Collected while reading: ``problems`` stop the start; ``ignored`` is printed once."""

    problems: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        line = f"{where}: {message}"
        if line not in self.problems:
            self.problems.append(line)

    def ignore(self, line: str) -> None:
        if line not in self.ignored:
            self.ignored.append(line)

    def warn(self, line: str) -> None:
        if line not in self.warnings:
            self.warnings.append(line)
