"""Which role may do what (权限矩阵). The single table that access helpers consult.

Actions are verbs on one organisation's data. A user may act only within organisations where a
membership grants a role whose row lists the action.
"""

from __future__ import annotations

from enum import StrEnum

from piaotong.accounts.choices import Role


class Action(StrEnum):
    VIEW_INVOICES = "view_invoices"
    DRAFT_INVOICE = "draft_invoice"
    ISSUE_INVOICE = "issue_invoice"
    REVIEW_INVOICE = "review_invoice"
    REQUEST_ROLE_CHANGE = "request_role_change"
    APPROVE_ROLE_CHANGE = "approve_role_change"
    VIEW_ACCESS_REVIEW = "view_access_review"
    VIEW_AUDIT_LOG = "view_audit_log"
    # Granted per organisation like the others, but effective only in a tax bureau, and only
    # over taxpayers of the bureau's region (`accounts.registration.reviewing_regions`).
    REVIEW_REGISTRATION = "review_registration"


PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.CLERK: frozenset({Action.VIEW_INVOICES, Action.DRAFT_INVOICE, Action.ISSUE_INVOICE}),
    Role.REVIEWER: frozenset({Action.VIEW_INVOICES, Action.REVIEW_INVOICE}),
    Role.FINANCE_MANAGER: frozenset(
        {Action.VIEW_INVOICES, Action.DRAFT_INVOICE, Action.ISSUE_INVOICE, Action.REVIEW_INVOICE}
    ),
    Role.AUDITOR: frozenset(
        {Action.VIEW_INVOICES, Action.VIEW_ACCESS_REVIEW, Action.VIEW_AUDIT_LOG}
    ),
    Role.ORG_ADMIN: frozenset(
        {
            Action.VIEW_INVOICES,
            Action.REQUEST_ROLE_CHANGE,
            Action.APPROVE_ROLE_CHANGE,
            Action.VIEW_ACCESS_REVIEW,
            Action.VIEW_AUDIT_LOG,
        }
    ),
    Role.TAX_OFFICER: frozenset({Action.VIEW_INVOICES, Action.REVIEW_REGISTRATION}),
}


def role_allows(role: str, action: Action) -> bool:
    return action in PERMISSIONS.get(Role(role), frozenset())
