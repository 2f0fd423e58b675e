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
    # Lifecycle of issued invoices (seller side).
    VOID_INVOICE = "void_invoice"
    REQUEST_RED_LETTER = "request_red_letter"  # also answering the counterparty's request
    DELIVER_INVOICE = "deliver_invoice"
    # Received invoices (进项), deduction (勾选抵扣), purchase reconciliation, the VAT return.
    VIEW_PURCHASES = "view_purchases"
    BOOK_INVOICE = "book_invoice"
    SELECT_DEDUCTION = "select_deduction"
    CONFIRM_DEDUCTION = "confirm_deduction"
    RECONCILE_PURCHASES = "reconcile_purchases"
    VIEW_RETURN = "view_return"
    PREPARE_RETURN = "prepare_return"
    SUBMIT_RETURN = "submit_return"
    # Verification (查验) in bulk, the not-found trace, sync visibility, support tickets.
    VERIFY_INVOICES = "verify_invoices"
    TRACE_INVOICE = "trace_invoice"
    VIEW_SYNC = "view_sync"
    HANDLE_TICKETS = "handle_tickets"
    # Authority flags (失控 / 异常) on issued invoices: like REVIEW_REGISTRATION, effective only
    # in a tax bureau, over its region's sellers, and only on the hub (invoices.authority).
    FLAG_INVOICE = "flag_invoice"


# Voiding and red-letter stay with the finance manager: both need a second factor at login
# (accounts.twofactor.MANDATORY_ROLES), as the user-center rules require.
PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.CLERK: frozenset(
        {
            Action.VIEW_INVOICES,
            Action.DRAFT_INVOICE,
            Action.ISSUE_INVOICE,
            Action.DELIVER_INVOICE,
            Action.VIEW_PURCHASES,
            Action.RECONCILE_PURCHASES,
            Action.VERIFY_INVOICES,
            Action.TRACE_INVOICE,
        }
    ),
    Role.REVIEWER: frozenset(
        {
            Action.VIEW_INVOICES,
            Action.REVIEW_INVOICE,
            Action.VIEW_PURCHASES,
            Action.VERIFY_INVOICES,
            Action.TRACE_INVOICE,
        }
    ),
    Role.FINANCE_MANAGER: frozenset(
        {
            Action.VIEW_INVOICES,
            Action.DRAFT_INVOICE,
            Action.ISSUE_INVOICE,
            Action.REVIEW_INVOICE,
            Action.VOID_INVOICE,
            Action.REQUEST_RED_LETTER,
            Action.DELIVER_INVOICE,
            Action.VIEW_PURCHASES,
            Action.BOOK_INVOICE,
            Action.SELECT_DEDUCTION,
            Action.CONFIRM_DEDUCTION,
            Action.RECONCILE_PURCHASES,
            Action.VIEW_RETURN,
            Action.PREPARE_RETURN,
            Action.SUBMIT_RETURN,
            Action.VERIFY_INVOICES,
            Action.TRACE_INVOICE,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            Action.VIEW_INVOICES,
            Action.VIEW_ACCESS_REVIEW,
            Action.VIEW_AUDIT_LOG,
            Action.VIEW_PURCHASES,
            Action.VIEW_RETURN,
            Action.VERIFY_INVOICES,
            Action.TRACE_INVOICE,
        }
    ),
    Role.ORG_ADMIN: frozenset(
        {
            Action.VIEW_INVOICES,
            Action.REQUEST_ROLE_CHANGE,
            Action.APPROVE_ROLE_CHANGE,
            Action.VIEW_ACCESS_REVIEW,
            Action.VIEW_AUDIT_LOG,
            Action.VIEW_PURCHASES,
            Action.VIEW_RETURN,
            Action.TRACE_INVOICE,
            Action.VIEW_SYNC,
        }
    ),
    Role.TAX_OFFICER: frozenset(
        {
            Action.VIEW_INVOICES,
            Action.REVIEW_REGISTRATION,
            Action.VERIFY_INVOICES,
            Action.TRACE_INVOICE,
            Action.VIEW_SYNC,
            Action.HANDLE_TICKETS,
            Action.FLAG_INVOICE,
        }
    ),
    # The operator of the platform node: its health and its own staff, never a taxpayer's
    # invoices, purchases or returns.
    Role.PLATFORM_ADMIN: frozenset(
        {
            Action.VIEW_SYNC,
            Action.VIEW_AUDIT_LOG,
            Action.VIEW_ACCESS_REVIEW,
            Action.REQUEST_ROLE_CHANGE,
            Action.APPROVE_ROLE_CHANGE,
        }
    ),
}


def role_allows(role: str, action: Action) -> bool:
    return action in PERMISSIONS.get(Role(role), frozenset())
