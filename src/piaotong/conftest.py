"""Shared fixtures and the personas that encode the permission model.

Org A (北京测试科技) has a clerk, a reviewer, an auditor; org B (上海测试贸易) has its own clerk,
the outsider of every access test. The Beijing tax bureau (税务机关) has a tax officer who reviews
registrations of region 11; the Shanghai bureau's officer reviews region 31 only.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.signals import user_logged_in
from django.test import override_settings

from piaotong.accounts.access import Actor, actor_for_user
from piaotong.accounts.choices import Role, TaxpayerKind
from piaotong.accounts.models import Organisation, User
from piaotong.ledger.keys import node_key
from piaotong.testing import make_bureau, make_org, make_user, stamp_forced_login


@pytest.fixture(autouse=True, scope="session")
def _signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with override_settings(PIAOTONG_KEY_DIR=tmp_path_factory.mktemp("keys")):
        node_key.cache_clear()
        yield
        node_key.cache_clear()


@pytest.fixture(autouse=True, scope="session")
def _force_login_is_a_full_login() -> Any:
    """`client.force_login(user)` leaves the session the two-step login would leave.

    Without it the login middleware would log such sessions out (they lack the login stamp).
    Personas whose role requires two-factor login have an authenticator (`make_user`), so
    their forced sessions count as having proved it; see `testing.stamp_forced_login`.
    """
    user_logged_in.connect(stamp_forced_login, dispatch_uid="piaotong-forced-login")
    yield
    user_logged_in.disconnect(dispatch_uid="piaotong-forced-login")


@pytest.fixture
def org_a(db: Any) -> Organisation:
    return make_org("北京测试科技有限公司", "110108", "MA01TEXT", address="北京市海淀区测试路 1 号")


@pytest.fixture
def org_b(db: Any) -> Organisation:
    return make_org("上海测试贸易有限公司", "310115", "MA1TEXT2")


@pytest.fixture
def small_org(db: Any) -> Organisation:
    return make_org("北京小微商店", "110105", "MA01XMAL", taxpayer_kind=TaxpayerKind.SMALL_SCALE)


@pytest.fixture
def clerk(org_a: Organisation) -> User:
    return make_user("clerk", org_a, Role.CLERK)


@pytest.fixture
def second_clerk(org_a: Organisation) -> User:
    return make_user("clerk2", org_a, Role.CLERK)


@pytest.fixture
def reviewer(org_a: Organisation) -> User:
    return make_user("reviewer", org_a, Role.REVIEWER)


@pytest.fixture
def auditor(org_a: Organisation) -> User:
    return make_user("auditor", org_a, Role.AUDITOR)


@pytest.fixture
def outsider(org_b: Organisation) -> User:
    return make_user("outsider", org_b, Role.CLERK)


@pytest.fixture
def clerk_actor(clerk: User) -> Actor:
    return actor_for_user(clerk)


@pytest.fixture
def media_root(settings: Any, tmp_path: Any) -> Any:
    """Uploaded files go to a fresh directory per test."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def beijing_bureau(db: Any) -> Organisation:
    return make_bureau("国家税务总局北京市税务局", "110000", "00000BJ1")


@pytest.fixture
def shanghai_bureau(db: Any) -> Organisation:
    return make_bureau("国家税务总局上海市税务局", "310000", "00000HP1")


@pytest.fixture
def tax_officer(beijing_bureau: Organisation) -> User:
    return make_user("officer", beijing_bureau, Role.TAX_OFFICER)


@pytest.fixture
def shanghai_officer(shanghai_bureau: Organisation) -> User:
    return make_user("sh.officer", shanghai_bureau, Role.TAX_OFFICER)
