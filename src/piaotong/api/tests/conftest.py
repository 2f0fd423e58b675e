from __future__ import annotations

import pytest

from piaotong.accounts.actions import do_create_api_key
from piaotong.accounts.choices import ApiScope
from piaotong.testing import OPERATOR


@pytest.fixture
def token_a(org_a) -> str:
    return do_create_api_key(
        OPERATOR, org_a, "ERP", [ApiScope.INVOICES_READ, ApiScope.INVOICES_WRITE]
    )[1]


@pytest.fixture
def token_b(org_b) -> str:
    return do_create_api_key(
        OPERATOR, org_b, "ERP-B", [ApiScope.INVOICES_READ, ApiScope.INVOICES_WRITE]
    )[1]


@pytest.fixture
def read_only_token(org_a) -> str:
    return do_create_api_key(OPERATOR, org_a, "BI", [ApiScope.INVOICES_READ])[1]
