"""Periodic access review (定期权限审查): who holds which role, when they last logged in, which
access is dormant, and which changes wait for approval.

Terms: a membership (成员角色) is one role of one user in one organisation; access is dormant
(休眠权限) when its user has not logged in for `PIAOTONG_DORMANT_DAYS` days (90 unless
configured) or, never having logged in, got their account that long ago. Dormant access is
revoked through ordinary permission change requests
(`role_requests.do_request_dormant_revocations`), which a second admin approves.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from django.utils.translation import gettext as _

from piaotong.accounts.choices import Role, RoleChange, RoleChangeStatus
from piaotong.accounts.models import Membership, Organisation, RoleChangeRequest

DEFAULT_DORMANT_DAYS = 90


def dormant_days() -> int:
    """Days without a login after which access counts as dormant (settings, default 90)."""
    days = getattr(settings, "PIAOTONG_DORMANT_DAYS", DEFAULT_DORMANT_DAYS)
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ImproperlyConfigured("PIAOTONG_DORMANT_DAYS must be a whole number of days, >= 1")
    return days


def is_dormant(last_seen: datetime, now: datetime, days: int) -> bool:
    """Whether `days` or more have passed since the user was last seen.

    >>> from datetime import UTC
    >>> now = datetime(2025, 6, 30, 12, tzinfo=UTC)
    >>> is_dormant(datetime(2025, 4, 1, 12, tzinfo=UTC), now, 90)
    True
    >>> is_dormant(datetime(2025, 4, 1, 12, 1, tzinfo=UTC), now, 90)
    False
    """
    return now - last_seen >= timedelta(days=days)


@dataclass(frozen=True)
class AccessRow:
    """One membership as the review shows it."""

    membership: Membership
    is_dormant: bool
    pending: RoleChangeRequest | None

    @property
    def role(self) -> Role:
        return Role(self.membership.role)


@dataclass(frozen=True)
class AccessReview:
    """Every membership of one organisation at `generated_at`, and the pending requests."""

    organisation: Organisation
    generated_at: datetime
    dormant_days: int
    rows: list[AccessRow]
    pending: list[RoleChangeRequest]

    @property
    def dormant(self) -> list[AccessRow]:
        return [row for row in self.rows if row.is_dormant]


def build_access_review(organisation: Organisation, now: datetime | None = None) -> AccessReview:
    """The review of one organisation, in two queries whatever its size."""
    now, days = now or timezone.now(), dormant_days()
    memberships = (
        Membership.objects.filter(organisation=organisation)
        .select_related("user")
        .order_by("user__username", "role", "pk")
    )
    pending = list(
        RoleChangeRequest.objects.filter(organisation=organisation, status=RoleChangeStatus.PENDING)
        .select_related("user", "requested_by")
        .order_by("requested_at", "pk")
    )
    pending_by_role = {(request.user_id, request.role): request for request in pending}
    rows = [
        AccessRow(
            membership=membership,
            is_dormant=is_dormant(
                membership.user.last_login or membership.user.date_joined, now, days
            ),
            pending=pending_by_role.get((membership.user_id, membership.role)),
        )
        for membership in memberships
    ]
    return AccessReview(organisation, now, days, rows, pending)


def _when(moment: datetime | None) -> str:
    return timezone.localtime(moment).isoformat(timespec="seconds") if moment else ""


def access_review_table(
    review: AccessReview,
) -> tuple[list[str], Iterator[Sequence[object]]]:
    """The review as a spreadsheet: the header and the rows, one per membership.

    Labels are translated now, in the requester's language, not later when a streaming response
    consumes the rows.
    """
    header = [
        _("Username"),
        _("Name"),
        _("Role"),
        _("Granted at"),
        _("Last login"),
        _("Dormant"),
        _("Account active"),
        _("Pending request"),
    ]
    roles = {role.value: str(role.label) for role in Role}
    changes = {change.value: str(change.label) for change in RoleChange}
    return header, _rows(review, roles, changes, (_("yes"), _("no")))


def _rows(
    review: AccessReview,
    roles: dict[str, str],
    changes: dict[str, str],
    yes_no: tuple[str, str],
) -> Iterator[Sequence[object]]:
    for row in review.rows:
        user = row.membership.user
        yield [
            user.username,
            user.get_full_name(),
            roles.get(row.membership.role, row.membership.role),
            _when(row.membership.created_at),
            _when(user.last_login),
            yes_no[0] if row.is_dormant else yes_no[1],
            yes_no[0] if user.is_active else yes_no[1],
            changes[row.pending.change] if row.pending else "",
        ]
