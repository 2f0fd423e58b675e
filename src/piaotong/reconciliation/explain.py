"""Explanations (匹配说明): which rule decided an item and which fields differ, in words.

Items store the rule, the differing fields and a few notes (`matching.Decision`); the sentence is
written when it is shown, in the reader's language, and in both languages for the API and the
export, so a change of wording never needs a data migration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from piaotong.reconciliation.matching import Rule

RULE_SENTENCES = {
    Rule.EXACT: gettext_lazy(
        "Rule 1, exact: number, seller tax id, amounts and issue date all agree."
    ),
    Rule.NUMBER_NORMALISED: gettext_lazy(
        "Rule 2, number normalised: the same invoice once spaces, full-width digits, prefixes "
        "or a run-in invoice code are removed from the number; everything else agrees."
    ),
    Rule.ROUNDING: gettext_lazy(
        "Rule 3, rounding: same number, seller and date; the amounts differ by no more than the "
        "rounding allowance of %(allowance)s yuan. Confirm it if the books rounded differently."
    ),
    Rule.DATE_WINDOW: gettext_lazy(
        "Rule 4, date window: same number and seller, amounts within the rounding allowance of "
        "%(allowance)s yuan, but the issue dates differ. Correct the date in the books."
    ),
    Rule.FUZZY_NUMBER: gettext_lazy(
        "Rule 5, fuzzy number: the number differs from the invoice's by %(typo)s, while seller, "
        "date and amounts agree: most likely a typing slip. Check the number and confirm."
    ),
    Rule.LEGAL_ENTITY: gettext_lazy(
        "Rule 6, legal entity: same number, but the books name another tax id of the same legal "
        "entity (%(entity_by)s). Check which tax id the supplier invoices under."
    ),
    Rule.LEGAL_ENTITY_FUZZY: gettext_lazy(
        "Rule 7, legal entity with fuzzy number: the number differs by %(typo)s and the seller "
        "is another tax id of the same legal entity (%(entity_by)s). Check both and confirm."
    ),
    Rule.MISMATCH: gettext_lazy(
        "Rule 8, mismatch: the invoice with this number was received, but the fields below "
        "disagree beyond the tolerances. Correct the books, or ask the supplier."
    ),
    Rule.MANUAL: gettext_lazy("Matched by hand by %(by)s."),
    Rule.NO_INVOICE: gettext_lazy(
        "Missing on the platform: no received invoice fits this row by any rule. Check the "
        "number, seller and amounts; a very recent invoice may not have arrived yet, so try "
        "again later or trace the number."
    ),
    Rule.NO_RECORD: gettext_lazy(
        "Missing in the books: no imported row fits this received invoice. Book it, or correct "
        "the row that should have matched."
    ),
}

FIELD_LABELS = {
    "number": gettext_lazy("invoice number"),
    "seller_tax_id": gettext_lazy("seller tax id"),
    "seller_name": gettext_lazy("seller name"),
    "issue_date": gettext_lazy("issue date"),
    "amount": gettext_lazy("amount"),
    "tax": gettext_lazy("tax"),
    "total": gettext_lazy("total with tax"),
}


def _typo(code: str) -> str:
    return _("two adjacent digits swapped") if code == "swap" else _("one digit")


def _entity(code: str) -> str:
    if code == "organisation_code":
        return _("both tax ids carry the same organisation code (组织机构代码)")
    return _("the names are the same company, one of them a branch (分公司)")


def rule_sentence(rule: str, notes: Mapping[str, str]) -> str:
    params: dict[str, Any] = {
        "allowance": notes.get("allowance", ""),
        "typo": _typo(notes.get("typo", "")),
        "entity_by": _entity(notes.get("entity_by", "")),
        "by": notes.get("by", ""),
    }
    return str(RULE_SENTENCES[Rule(rule)]) % params


def diff_sentence(diff: Sequence[str]) -> str:
    field, book, platform, *rest = diff
    delta = rest[0] if rest else ""
    params = {
        "field": FIELD_LABELS.get(field, field),
        "book": book or "-",
        "platform": platform or "-",
        "delta": delta,
    }
    if field == "issue_date" and delta:
        return _("%(field)s: books %(book)s, platform %(platform)s (%(delta)s days)") % params
    if delta:
        return _("%(field)s: books %(book)s, platform %(platform)s (difference %(delta)s)") % params
    return _("%(field)s: books %(book)s, platform %(platform)s") % params


def hint_sentences(notes: Mapping[str, str]) -> list[str]:
    hints = []
    if "taken_by_row" in notes:
        hints.append(
            _("The invoice with this number is already paired with row %(row)s.")
            % {"row": notes["taken_by_row"]}
        )
    if "candidates" in notes:
        hints.append(
            _("%(count)s invoices with a near number fit equally well: pair it by hand.")
            % {"count": notes["candidates"]}
        )
    if "unmatched_by" in notes:
        hints.append(_("Unpaired by hand by %(by)s.") % {"by": notes["unmatched_by"]})
    return hints


def explain(rule: str, diffs: Sequence[Sequence[str]], notes: Mapping[str, str]) -> str:
    """The whole explanation in the active language: rule, differing fields, hints."""
    parts = [rule_sentence(rule, notes)]
    if diffs:
        parts.append("; ".join(diff_sentence(d) for d in diffs) + ".")
    parts.extend(hint_sentences(notes))
    return " ".join(parts)


def explain_both(
    rule: str, diffs: Sequence[Sequence[str]], notes: Mapping[str, str]
) -> tuple[str, str]:
    """(Chinese, English)."""
    with translation.override("zh-hans"):
        zh = explain(rule, diffs, notes)
    with translation.override("en"):
        en = explain(rule, diffs, notes)
    return zh, en
