"""Invoice QR code texts (发票二维码): the official positional text and our signed payload.

Terms (china-einvoice.md §2):

- official QR text (发票二维码): eight comma-separated fields, often with a trailing comma:
  ``version, kind, invoice code, number, amount, date (YYYYMMDD), check code, check``.

  ===== ============== ===========================================================
  field name           数电票 (fully digitalized)     / legacy (税控)
  ===== ============== ===========================================================
  1     version        ``01``
  2     kind_code      31 数电专票, 32 数电普票 (others, e.g. 51, are accepted as unknown)
                       / 01 专票, 04 普票, 08 电子专票, 10 电子普票, ...
  3     invoice_code   empty / 发票代码 (10 or 12 digits)
  4     number         20 digits / 发票号码 (8 digits)
  5     amount         价税合计 (tax-inclusive total) / amount excluding tax
  6     issue_date     YYYYMMDD, never later than today
  7     check_code     empty / 校验码 (20 digits) or empty for 专票
  8     check          4 hex digits or empty
  ===== ============== ===========================================================

- check (校验位): the last field has no published meaning; this platform defines it as the
  CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF) of the ASCII text before it,
  as four upper-case hex digits. A CRC-16 catches every single wrong character and every
  swap of two characters in a field, the typical misreads of a damaged code. For 数电 codes
  `parse_qr` checks it; a legacy code's last field came from the old 税控 system, so only its
  shape is checked.
- signed payload (签名二维码): a second QR text, ``PTSIG1,<facts>,<key id>,<signature>``, that
  carries the canonical facts needed to check an invoice offline (number, date, tax ids of
  seller and buyer, totals and the hash of the signed invoice payload) and the issuing node's
  Ed25519 signature over `signed_payload_message` of those facts. The payload hash ties the
  QR to the full invoice payload signed at issue, so both signatures come from one trust root:
  the node's key in the key registry.

>>> text = compose_digital_qr("32", "26112000000000000042", date(2026, 1, 5), Decimal("113"))
>>> text
'01,32,,26112000000000000042,113.00,20260105,,EA64,'
>>> data = parse_qr(text.replace(",", "，"), today=date(2026, 2, 1))
>>> data.number, data.amount, data.is_digital
('26112000000000000042', Decimal('113.00'), True)
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from piaotong.lib.canonical import canonical_json
from piaotong.lib.errors import RuleViolation
from piaotong.lib.invoice_numbers import parse_number
from piaotong.lib.legacy_numbers import LegacyInvoiceInfo, decode_legacy
from piaotong.lib.money import CENT

QR_VERSION = "01"
DIGITAL_KINDS: dict[str, str] = {"31": "数电专票", "32": "数电普票"}
LEGACY_KINDS: dict[str, str] = {
    "01": "增值税专用发票",
    "04": "增值税普通发票",
    "08": "增值税电子专用发票",
    "10": "增值税电子普通发票",
    "11": "增值税普通发票（卷票）",
    "14": "通行费电子普通发票",
}
# 专票-family legacy kinds carry no 校验码 (china-einvoice.md §1.2).
_SPECIAL_LEGACY_KINDS = frozenset({"01", "08"})
MAX_QR_LENGTH = 512
MIN_YEAR = 1994  # the 税控 system started in 1994; no invoice is older
SHANGHAI = ZoneInfo("Asia/Shanghai")

_FIELD_NAMES = (
    "version",
    "kind_code",
    "invoice_code",
    "number",
    "amount",
    "issue_date",
    "check_code",
    "check",
)
_NORMALIZE = str.maketrans("０１２３４５６７８９，．", "0123456789,.")
_SPACES = re.compile(r"\s+")
_AMOUNT = re.compile(r"-?\d{1,12}(\.\d+)?")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")


@dataclass(frozen=True)
class QrData:
    """The facts of one official invoice QR text.

    Invariant: every field passed `parse_qr`'s checks. `amount` is the tax-inclusive total for
    数电 invoices and the amount excluding tax for legacy ones; `check_code` is the legacy
    校验码 or, for 数电 codes, the four-hex check ("" when absent). `legacy_check` keeps the
    last field of a legacy code, whose meaning is unpublished.
    """

    version: str
    kind_code: str
    invoice_code: str
    number: str
    issue_date: date
    amount: Decimal
    check_code: str
    is_digital: bool
    legacy_check: str = ""

    @property
    def kind_label(self) -> str:
        """The kind in Chinese, or 未识别的票种 for kind codes without a public meaning."""
        labels = DIGITAL_KINDS if self.is_digital else LEGACY_KINDS
        return labels.get(self.kind_code, "未识别的票种")

    @property
    def is_known_kind(self) -> bool:
        return self.kind_code in (DIGITAL_KINDS if self.is_digital else LEGACY_KINDS)


def check_hex(text: str) -> str:
    """The four-hex check over `text`, the QR text before the check field.

    >>> check_hex("123456789")
    '29B1'
    """
    return f"{binascii.crc_hqx(text.encode('ascii'), 0xFFFF):04X}"


def compose_digital_qr(
    kind_code: str, number: str, issue_date: date, total_with_tax: Decimal
) -> str:
    """The official QR text of a 数电 invoice; `total_with_tax` is the 价税合计.

    >>> compose_digital_qr("31", "26312000000000000001", date(2026, 3, 1), Decimal("-56.5"))
    '01,31,,26312000000000000001,-56.50,20260301,,72A3,'
    """
    _check_kind_code(kind_code)
    parse_number(number)
    head = (
        f"{QR_VERSION},{kind_code},,{number},{_amount_text(total_with_tax)},{issue_date:%Y%m%d},,"
    )
    return f"{head}{check_hex(head)},"


def compose_legacy_qr(
    kind_code: str,
    invoice_code: str,
    number: str,
    issue_date: date,
    amount: Decimal,
    check_code: str = "",
) -> str:
    """The QR text of a legacy (税控) invoice; `amount` excludes tax, `check_code` is the 校验码.

    >>> compose_legacy_qr("10", "011001900111", "00000001", date(2019, 5, 1), Decimal("100"),
    ...                   "12345678901234567890")
    '01,10,011001900111,00000001,100.00,20190501,12345678901234567890,5687,'
    """
    _check_kind_code(kind_code)
    info = _decode_legacy(invoice_code, number)
    if check_code:
        _check_check_code(check_code)
    head = (
        f"{QR_VERSION},{kind_code},{info.code},{info.number},{_amount_text(amount)},"
        f"{issue_date:%Y%m%d},{check_code},"
    )
    return f"{head}{check_hex(head)},"


def _amount_text(amount: Decimal) -> str:
    if not amount.is_finite() or amount != amount.quantize(CENT):
        raise _violation(
            "amount",
            "amount_decimals",
            _("The amount %(amount)s has more than two decimals; amounts are in yuan and fen."),
            amount=amount,
        )
    return str(amount.quantize(CENT))


def parse_qr(text: str, today: date | None = None, *, verify_check: bool = True) -> QrData:
    """Read an official invoice QR text, legacy or 数电, or raise a `RuleViolation`.

    Accepts a trailing comma, whitespace anywhere, full-width commas and digits. `today`
    defaults to today in Asia/Shanghai; a later issue date is refused. With `verify_check`
    false a 数电 code's check field is read but not recomputed (for codes of other platforms).

    >>> parse_qr(" 01, 04 ,3100191330,00012345,1000.00,20190317,12345678901234567890,ABCD ").kind_label
    '增值税普通发票'
    >>> try:
    ...     parse_qr("01,32,,26112000000000000042,113.005,20260105,,,")
    ... except RuleViolation as error:
    ...     print(error.field, error.code, error.params)
    amount qr_amount_decimals {'value': '113.005'}
    """
    fields = _split(text)
    version, kind_code, invoice_code, number = fields[:4]
    if version != QR_VERSION:
        raise _field_violation(
            1,
            "qr_version",
            _("Field %(position)s (%(name)s) must be 01; %(value)s was found."),
            version,
        )
    _check_kind_code(kind_code, position=2)
    amount = _parse_amount(fields[4])
    issue_date = _parse_date(fields[5], today or datetime.now(SHANGHAI).date())
    if invoice_code == "":
        return _digital(fields, amount, issue_date, verify_check)
    info = _decode_legacy(invoice_code, number)
    if fields[6]:
        _check_check_code(fields[6])
    if fields[7] and not _HEX4.fullmatch(fields[7]):
        raise _field_violation(8, "qr_check_shape", CHECK_SHAPE, fields[7])
    return QrData(
        QR_VERSION,
        kind_code,
        info.code,
        info.number,
        issue_date,
        amount,
        fields[6],
        is_digital=False,
        legacy_check=fields[7].upper(),
    )


CHECK_SHAPE = _(
    "Field %(position)s (%(name)s) must be four hexadecimal digits or empty; %(value)s was found."
)


def _digital(fields: list[str], amount: Decimal, issue_date: date, verify_check: bool) -> QrData:
    kind_code, number = fields[1], fields[3]
    if kind_code in LEGACY_KINDS:
        raise _field_violation(
            3,
            "qr_missing_code",
            _(
                "Field %(position)s (%(name)s) is empty, but kind %(value)s is a legacy invoice, "
                "which needs its invoice code (发票代码)."
            ),
            kind_code,
        )
    parse_number(number)
    if fields[6]:
        raise _field_violation(
            7,
            "qr_digital_check_code",
            _(
                "Field %(position)s (%(name)s) must be empty on a 数电 invoice; %(value)s was found."
            ),
            fields[6],
        )
    check = fields[7].upper()
    if check and not _HEX4.fullmatch(check):
        raise _field_violation(8, "qr_check_shape", CHECK_SHAPE, check)
    if check and verify_check:
        head = f"{QR_VERSION},{kind_code},,{number},{_amount_text(amount)},{issue_date:%Y%m%d},,"
        if check != check_hex(head):
            raise _field_violation(
                8,
                "qr_check_mismatch",
                _(
                    "Field %(position)s (%(name)s): the check %(value)s does not match the other "
                    "fields, so a field was misread or altered. Scan the code again or type the "
                    "fields by hand."
                ),
                check,
            )
    return QrData(QR_VERSION, kind_code, "", number, issue_date, amount, check, is_digital=True)


def _split(text: str) -> list[str]:
    if len(text) > MAX_QR_LENGTH:
        raise _violation(
            "qr",
            "qr_too_long",
            _("The text has %(length)s characters; an invoice QR text has at most 512."),
            length=len(text),
        )
    fields = [_SPACES.sub("", field) for field in text.translate(_NORMALIZE).split(",")]
    if len(fields) == 9 and fields[8] == "":
        fields.pop()
    if len(fields) == 7:
        fields.append("")
    if len(fields) != 8:
        raise _violation(
            "qr",
            "qr_field_count",
            _(
                "The text has %(count)s comma-separated fields; an invoice QR text has 8: "
                "version, kind, invoice code, number, amount, date, check code, check."
            ),
            count=len(fields),
        )
    return fields


def _check_kind_code(kind_code: str, position: int = 2) -> None:
    if not (len(kind_code) == 2 and kind_code.isascii() and kind_code.isdigit()):
        raise _field_violation(
            position,
            "qr_kind",
            _(
                "Field %(position)s (%(name)s) must be a two-digit kind such as 32; %(value)s was found."
            ),
            kind_code,
        )


def _decode_legacy(invoice_code: str, number: str) -> LegacyInvoiceInfo:
    try:
        return decode_legacy(invoice_code, number)
    except RuleViolation as error:
        raise error.renamed("invoice_code" if error.field == "code" else "number") from None


def _parse_amount(text: str) -> Decimal:
    if not _AMOUNT.fullmatch(text):
        raise _field_violation(
            5,
            "qr_amount",
            _(
                "Field %(position)s (%(name)s) must be an amount in yuan such as 1130.00; %(value)s was found."
            ),
            text,
        )
    if "." in text and len(text.split(".")[1]) > 2:
        raise RuleViolation(
            "amount",
            "qr_amount_decimals",
            _(
                "Field 5 (amount) has more than two decimals (%(value)s); amounts are in yuan and fen."
            ),
            {"value": text},
        )
    return Decimal(text).quantize(CENT)


def _parse_date(text: str, today: date) -> date:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        issued = date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise _field_violation(
            6,
            "qr_date",
            _(
                "Field %(position)s (%(name)s) must be a date written YYYYMMDD such as 20260105; %(value)s was found."
            ),
            text,
        ) from None
    if issued > today:
        raise _field_violation(
            6,
            "qr_future_date",
            _(
                "Field %(position)s (%(name)s): the date %(value)s is later than today. Check the scan or the date typed."
            ),
            text,
        )
    if issued.year < MIN_YEAR:
        raise _field_violation(
            6,
            "qr_date",
            _(
                "Field %(position)s (%(name)s): the date %(value)s is before any invoice of this kind was issued."
            ),
            text,
        )
    return issued


def _check_check_code(check_code: str) -> None:
    if not (len(check_code) == 20 and check_code.isascii() and check_code.isdigit()):
        raise _field_violation(
            7,
            "qr_check_code",
            _(
                "Field %(position)s (%(name)s): the check code (校验码) must be 20 digits or empty; %(value)s was found."
            ),
            check_code,
        )


def _field_violation(position: int, code: str, message: str | Promise, value: str) -> RuleViolation:
    """A violation on one positional field; `message` may use %(position)s, %(name)s, %(value)s."""
    name = _FIELD_NAMES[position - 1]
    return RuleViolation(name, code, message, {"position": position, "name": name, "value": value})


def _violation(field: str, code: str, message: str | Promise, **params: object) -> RuleViolation:
    return RuleViolation(field, code, message, dict(params))


# --- signed payload -------------------------------------------------------------------------

SIGNED_PREFIX = "PTSIG1"
SIGNED_SCHEMA = "piaotong.qr-signed"
SIGNED_FIELDS = (
    "number",
    "issue_date",
    "seller_tax_id",
    "buyer_tax_id",
    "total_amount",
    "total_tax",
    "total_with_tax",
    "payload_hash",
)
_SIGNED_SHAPES: dict[str, re.Pattern[str]] = {
    "number": re.compile(r"\d{20}"),
    "issue_date": re.compile(r"\d{4}-\d{2}-\d{2}"),
    "seller_tax_id": re.compile(r"[0-9A-Z]{15,20}"),
    "buyer_tax_id": re.compile(r"[0-9A-Z]{0,20}"),
    "total_amount": re.compile(r"-?\d{1,12}\.\d{2}"),
    "total_tax": re.compile(r"-?\d{1,12}\.\d{2}"),
    "total_with_tax": re.compile(r"-?\d{1,12}\.\d{2}"),
    "payload_hash": re.compile(r"[0-9a-f]{64}"),
    "key_id": re.compile(r"[0-9a-f]{16}"),
}


def signed_payload_message(fields: dict[str, str]) -> bytes:
    """The exact bytes the node signs for a signed-payload QR: canonical JSON of the facts.

    >>> signed_payload_message({"number": "1"})
    b'{"number":"1","schema":"piaotong.qr-signed","version":1}'
    """
    return canonical_json({**fields, "schema": SIGNED_SCHEMA, "version": 1})


def compose_signed_payload(fields: dict[str, str], key_id: str, signature: str) -> str:
    """The signed-payload QR text. `fields` holds every name in `SIGNED_FIELDS` as text.

    >>> facts = dict(number="26112000000000000042", issue_date="2026-01-05",
    ...     seller_tax_id="91110000MA01ABCD1X", buyer_tax_id="", total_amount="100.00",
    ...     total_tax="13.00", total_with_tax="113.00", payload_hash="ab" * 32)
    >>> text = compose_signed_payload(facts, "0123456789abcdef", "A" * 86 + "==")
    >>> parse_signed_payload(text) == (facts, "0123456789abcdef", "A" * 86 + "==")
    True
    """
    values = {name: str(fields.get(name, "")) for name in SIGNED_FIELDS}
    _check_signed(values, key_id, signature)
    return ",".join([SIGNED_PREFIX, *values.values(), key_id, signature])


def is_signed_payload(text: str) -> bool:
    return text.strip().startswith(SIGNED_PREFIX + ",")


def parse_signed_payload(text: str) -> tuple[dict[str, str], str, str]:
    """(fields, key id, signature) of a signed-payload QR text, or a `RuleViolation`."""
    if len(text) > MAX_QR_LENGTH:
        raise _violation(
            "qr",
            "qr_too_long",
            _("The text has %(length)s characters; an invoice QR text has at most 512."),
            length=len(text),
        )
    parts = [part.strip() for part in text.strip().split(",")]
    if parts[0] != SIGNED_PREFIX or len(parts) != len(SIGNED_FIELDS) + 3:
        raise _violation(
            "qr",
            "signed_qr_shape",
            _(
                "This is not a signed invoice QR text: it must start with PTSIG1 and have "
                "%(count)s comma-separated fields."
            ),
            count=len(SIGNED_FIELDS) + 3,
        )
    fields = dict(zip(SIGNED_FIELDS, parts[1:-2], strict=True))
    key_id, signature = parts[-2], parts[-1]
    _check_signed(fields, key_id, signature)
    return fields, key_id, signature


def _check_signed(fields: dict[str, str], key_id: str, signature: str) -> None:
    for name, value in [*fields.items(), ("key_id", key_id)]:
        if not _SIGNED_SHAPES[name].fullmatch(value):
            raise _violation(
                name,
                "signed_qr_field",
                _("The signed QR field %(name)s has a wrong format (%(value)s)."),
                name=name,
                value=value,
            )
    try:
        raw = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 64:
        raise _violation(
            "signature",
            "signed_qr_signature",
            _("The signature must be 64 bytes in base64; the QR text is damaged."),
        )
