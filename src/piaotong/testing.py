"""Factories for tests and benchmarks: organisations, users and drafts built through actions."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.http import HttpRequest
from django.utils import timezone

from piaotong.accounts import session_state
from piaotong.accounts.access import Actor
from piaotong.accounts.actions import (
    do_begin_totp_setup,
    do_confirm_totp,
    do_create_user,
    do_grant_role,
    do_register_organisation,
)
from piaotong.accounts.choices import OrganisationKind, Role
from piaotong.accounts.models import Organisation, TotpDevice, User
from piaotong.accounts.twofactor import MANDATORY_ROLES, has_confirmed_device
from piaotong.invoices.choices import InvoiceKind
from piaotong.invoices.rules import InvoiceDraft, LineDraft
from piaotong.lib import totp
from piaotong.lib.taxid import compose_uscc

SOFTWARE_SERVICE = "3040201030000000000"
OPERATOR = Actor()


def make_org(name: str, area: str, org8: str, **extra: Any) -> Organisation:
    return do_register_organisation(
        OPERATOR, name=name, tax_id=compose_uscc("9", "1", area, org8), region=area[:2], **extra
    )


def make_bureau(name: str, area: str, org8: str) -> Organisation:
    """A tax bureau (税务机关): a state organ, so its USCC starts with 11."""
    return do_register_organisation(
        OPERATOR,
        name=name,
        tax_id=compose_uscc("1", "1", area, org8),
        region=area[:2],
        kind=OrganisationKind.TAX_BUREAU,
    )


def make_user(username: str, org: Organisation, *roles: Role, with_2fa: bool | None = None) -> User:
    """A user with roles in `org`; by default with an authenticator if a role requires one."""
    user = do_create_user(OPERATOR, username, "correct-horse-battery", full_name=username)
    for role in roles:
        do_grant_role(OPERATOR, user, org, role)
    if with_2fa if with_2fa is not None else bool(MANDATORY_ROLES.intersection(roles)):
        enable_totp(user)
    return user


def enable_totp(user: User) -> TotpDevice:
    """Set up and confirm an authenticator through the actions, as a person with the app does.

    The confirming code is from 90 seconds ago, so any code of the present is still unused.
    """
    actor = Actor(user=user)
    device = do_begin_totp_setup(actor, user)
    earlier = timezone.now() - timedelta(seconds=90)
    do_confirm_totp(actor, user, totp_code(device, earlier), earlier)
    device.refresh_from_db()
    return device


def totp_code(device: TotpDevice, at: datetime | None = None) -> str:
    """The code the user's authenticator app shows at `at` (now by default)."""
    moment = at or timezone.now()
    return totp.totp(totp.decode_secret(device.secret), moment.timestamp())


def stamp_forced_login(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    """Receiver of `user_logged_in` in tests: a `force_login` stands for the two-step login.

    The session gets the stamp the login flow gives it, with the second factor counted as
    proved when the user has an authenticator, exactly as after the real second step. Sessions
    made by the login flow are stamped by it already and left alone.
    """
    if session_state.LOGIN_AT not in request.session:
        session_state.stamp_login(
            request.session, second_factor=has_confirmed_device(user), now=timezone.now()
        )


def line(**overrides: Any) -> LineDraft:
    values: dict[str, Any] = {
        "tax_code": SOFTWARE_SERVICE,
        "item_name": "软件维护费",
        "tax_rate": "0.06",
        "quantity": Decimal("2"),
        "unit_price": Decimal("500"),
        "unit": "次",
    }
    return LineDraft(**(values | overrides))


def draft(buyer: Organisation | None = None, **overrides: Any) -> InvoiceDraft:
    values: dict[str, Any] = {
        "kind": InvoiceKind.DIGITAL_SPECIAL,
        "buyer_name": buyer.name if buyer else "上海测试贸易有限公司",
        "buyer_tax_id": buyer.tax_id if buyer else compose_uscc("9", "1", "310115", "MA1TEXT2"),
        "lines": [line()],
    }
    return InvoiceDraft(**(values | overrides))
