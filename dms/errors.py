"""Domain errors. Each carries a stable `code` and a message a user can act on.

The web layer maps the classes onto HTTP statuses; domain code raises them without knowing about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FieldProblem:
    """One thing wrong with one input field, named as the user wrote it (`memory`, `resources.cpu_mhz`)."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


@dataclass
class DmsError(Exception):
    message: str
    details: Any = None
    code: str = field(default="error")

    def __str__(self) -> str:
        return self.message


@dataclass
class InvalidInput(DmsError):
    """The request is well-formed but breaks a rule; `details` lists the fields."""

    code: str = "invalid_input"

    @classmethod
    def of(cls, problems: list[FieldProblem]) -> InvalidInput:
        summary = "; ".join(f"{p.field}: {p.message}" for p in problems)
        return cls(summary, [p.as_dict() for p in problems])


@dataclass
class NotFound(DmsError):
    code: str = "not_found"


@dataclass
class Conflict(DmsError):
    """The request is valid but the node's state does not allow it now (not onboarded, jobs running...)."""

    code: str = "conflict"
