"""Rule violations raised by the pure domain helpers.

A rule violation (规则违反) names the input field it concerns, a stable machine code, and a
message that says what was wrong and how to fix it. Messages are lazy translations, so the
same exception reads in Chinese or English depending on the active language.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from django.utils.functional import Promise


@dataclass
class RuleViolation(ValueError):
    """One broken rule about one field.

    `field` is a dotted path into the input ("buyer_tax_id", "lines.2.tax_rate").
    `code` is stable and meant for machines ("uscc_check_char").
    `message` is a lazy gettext string, formatted with `params`.
    """

    field: str
    code: str
    message: str | Promise
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.text())

    def text(self) -> str:
        """The message in the active language with its parameters filled in."""
        return str(self.message) % self.params if self.params else str(self.message)

    def renamed(self, field: str) -> RuleViolation:
        """The same violation reported against another field name."""
        return RuleViolation(field, self.code, self.message, self.params)

    def at(self, prefix: str) -> RuleViolation:
        """The same violation with its field nested under `prefix` (for line items)."""
        return RuleViolation(f"{prefix}.{self.field}", self.code, self.message, self.params)


class RuleViolations(ValueError):
    """Several violations found together, so a form can show all of them at once."""

    def __init__(self, violations: list[RuleViolation]) -> None:
        self.violations = violations
        super().__init__("; ".join(f"{v.field}: {v.text()}" for v in violations))


def raise_all(violations: list[RuleViolation]) -> None:
    """Raise what was found: nothing, the one violation, or all of them together."""
    if len(violations) == 1:
        raise violations[0]
    if violations:
        raise RuleViolations(violations)
