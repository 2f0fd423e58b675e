"""Template filters for money (金额), rates (税率) and statuses on the issuing screens."""

from __future__ import annotations

from decimal import Decimal

from django import template

from piaotong.invoices.forms import rate_label
from piaotong.lib.capitals import to_chinese_capitals

register = template.Library()
CENT = Decimal("0.01")


@register.filter
def money(value: Decimal | None, grouping: bool = True) -> str:
    """Two decimals, with thousands separators unless `grouping` is False (printed invoices).

    >>> money(Decimal("1234.5"))
    '1,234.50'
    >>> money(Decimal("1234.5"), False)
    '1234.50'
    >>> money(None)
    ''
    """
    if value is None:
        return ""
    return format(Decimal(value).quantize(CENT), ",.2f" if grouping else ".2f")


@register.filter
def fine(value: Decimal | None) -> str:
    """A quantity or unit price without trailing zeros (up to 13 decimals are kept).

    >>> fine(Decimal("2.5000000000000"))
    '2.5'
    >>> fine(Decimal("100"))
    '100'
    """
    if value is None:
        return ""
    text = format(Decimal(value), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@register.filter
def rate(key: str) -> str:
    return rate_label(key)


@register.filter
def capitals(value: Decimal | None) -> str:
    """价税合计 in Chinese capitals (大写), e.g. 壹佰壹拾叁圆整."""
    if value is None:
        return ""
    try:
        return to_chinese_capitals(Decimal(value))
    except ValueError:
        return ""


@register.filter
def status_class(status: str) -> str:
    return f"status status-{status.replace('_', '-')}"


@register.filter
def percent(used: Decimal, limit: Decimal) -> int:
    """How much of `limit` is used, in whole percent, capped at 100 (for quota bars).

    >>> percent(Decimal("250"), Decimal("1000"))
    25
    >>> percent(Decimal("1"), Decimal("0"))
    100
    """
    if not limit:
        return 100
    return min(100, int(Decimal(used) * 100 / Decimal(limit)))
