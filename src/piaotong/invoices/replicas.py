"""Replica invoices (副本发票): an invoice issued on another node, stored here as it was signed.

`InvoiceIssued` from the seller's home node becomes, at the buyer's node and at the hub, an
invoice with the same uid, number, content, key id and signature, and its lines. Before writing
anything the signature is checked against the writer's key from the hub's registry, and after
writing, the payload rebuilt from the stored rows must equal the signed one byte for byte, so a
replica can never print something its signature does not cover.

A replica's seller is an organisation of another region: it is registered here (through the
accounts action) when this node does not know it yet. Its buyer is linked when the buyer is an
organisation registered on this node.

The issuing node's own `InvoiceIssued`, taken back from the hub by recovery after a restore from
an old backup (docs/exchange.md §14), is stored the same way and then counted as issuing counted
it (`replay_own_invoice_issued`): the number sequence moves past its number and the month's
quota usage includes it.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from django.db.models import F
from django.utils.dateparse import parse_date

from piaotong.accounts.access import Actor
from piaotong.accounts.actions import do_register_organisation
from piaotong.accounts.models import Organisation
from piaotong.exchange.apply import (
    ApplyLater,
    ApplyRefused,
    register_applier,
    register_bulk,
    register_own_replay,
    stream_uid,
)
from piaotong.exchange.choices import FactSide, ParkReason, QuarantineReason
from piaotong.exchange.memo import remember
from piaotong.exchange.messages import IncomingEvent, Poison
from piaotong.exchange.nodes import key_of
from piaotong.fastsql import Rows, build, insert_many
from piaotong.invoices.choices import InvoiceStatus
from piaotong.invoices.models import Invoice, InvoiceLine, NumberSequence, QuotaUsage
from piaotong.invoices.payload import invoice_payload
from piaotong.lib import signing
from piaotong.lib.canonical import canonical_json

ISSUED_EVENT = "InvoiceIssued"
SYSTEM = Actor()


def _refuse(reason: QuarantineReason, detail: str) -> ApplyRefused:
    return ApplyRefused(reason, detail)


def verify_issued_signature(event: IncomingEvent) -> bytes:
    """The canonical payload bytes, after checking hash and signature with the writer's key."""
    content = event.payload
    try:
        payload, key_id = content["invoice"], content["key_id"]
        signature, payload_hash = content["signature"], content["payload_hash"]
    except (KeyError, TypeError):
        raise _refuse(
            QuarantineReason.MALFORMED, "InvoiceIssued without invoice or signature"
        ) from None
    key = key_of(key_id)
    if key is None:
        raise ApplyLater(ParkReason.AWAITING_KEY, f"key {key_id} is not in the registry yet")
    if key.node.node_id != event.writer:
        raise _refuse(
            QuarantineReason.BAD_SIGNATURE,
            f"signed with key {key_id} of {key.node.node_id}, but written by {event.writer}",
        )
    body = event.canonical_part("invoice") or canonical_json(payload)
    if hashlib.sha256(body).hexdigest() != payload_hash:
        raise _refuse(QuarantineReason.BAD_HASH, "the invoice payload does not match its hash")
    if not signing.verify(bytes(key.public_key), body, signature):
        raise _refuse(
            QuarantineReason.BAD_SIGNATURE,
            f"the signature of {payload.get('number')} "
            f"does not verify with key {key_id} of {event.writer}",
        )
    return body


def _organisation(tax_id: str) -> Organisation | None:
    """The organisation registered here under `tax_id`, remembered for the consumer's batch."""
    return remember(
        "organisation", tax_id, lambda: Organisation.objects.filter(tax_id=tax_id).first()
    )


def _seller(payload: dict[str, Any], region: str) -> Organisation:
    seller = payload["seller"]
    found = _organisation(seller["tax_id"])
    if found is not None:
        return found
    try:
        return do_register_organisation(
            SYSTEM, name=seller["name"], tax_id=seller["tax_id"], region=region
        )
    except Exception as exc:  # ValidationError from full_clean: the record is not storable here
        raise _refuse(
            QuarantineReason.INVALID_CONTENT, f"seller cannot be registered: {exc}"
        ) from exc


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _lines(invoice: Invoice, payload: dict[str, Any]) -> list[InvoiceLine]:
    # Built positionally (`fastsql.build`): keyword construction costs about three times as
    # much, and the consumer builds every line of every invoice it receives.
    return [
        build(
            InvoiceLine,
            {
                "position": line["position"],
                "kind": line["kind"],
                "tax_code": line["tax_code"],
                "item_name": line["name"],
                "printed_name": line["name"],
                "spec": line["spec"],
                "unit": line["unit"],
                "quantity": _decimal(line["quantity"]),
                "unit_price": _decimal(line["unit_price"]),
                "amount": Decimal(line["amount"]),
                "tax_rate": line["tax_rate"],
                "tax": Decimal(line["tax"]),
            },
            {"invoice": invoice},
        )
        for line in payload["lines"]
    ]


def _invoice(event: IncomingEvent, payload: dict[str, Any], seller: Organisation) -> Invoice:
    content, buyer = event.payload, payload["buyer"]
    issue_date = parse_date(payload["issue_date"])
    if not isinstance(issue_date, date):
        raise _refuse(QuarantineReason.INVALID_CONTENT, "issue_date is not a date")
    values = {
        "uid": stream_uid(event.stream),
        "kind": payload["kind"],
        "status": InvoiceStatus.ISSUED,
        "number": payload["number"],
        "issue_date": issue_date,
        "issued_at": event.occurred_at,
        "seller_name": payload["seller"]["name"],
        "seller_tax_id": payload["seller"]["tax_id"],
        "seller_address": payload["seller"]["address"],
        "seller_bank": payload["seller"]["bank"],
        "buyer_kind": buyer["kind"],
        "buyer_name": buyer["name"],
        "buyer_tax_id": buyer["tax_id"],
        "buyer_address": buyer["address"],
        "buyer_bank": buyer["bank"],
        "total_amount": Decimal(payload["total_amount"]),
        "total_tax": Decimal(payload["total_tax"]),
        "total_with_tax": Decimal(payload["total_with_tax"]),
        "remarks": payload["remarks"],
        "created_by_label": payload["issuer"],
        "issuer_name": payload["issuer"],
        "reviewer_name": payload["reviewer"],
        "signing_key_id": content["key_id"],
        "signature": content["signature"],
        "payload_hash": content["payload_hash"],
    }
    related = {
        "seller": seller,
        "buyer": _organisation(buyer["tax_id"]) if buyer["tax_id"] else None,
        "red_of": _red_of(payload),
    }
    return build(Invoice, values, related)


def _red_of(payload: dict[str, Any]) -> Invoice | None:
    """The blue invoice a red invoice reverses; it must be here first (else the event waits)."""
    if "red_of" not in payload:
        return None
    number = payload["red_of"]["number"]
    blue = Invoice.objects.filter(number=number).first()
    if blue is None:
        raise ApplyLater(
            ParkReason.GAP, f"red invoice of {number}, which has not arrived at this node yet"
        )
    return blue


def _uid_sql() -> str:
    return f"SELECT uid FROM {Invoice._meta.db_table} WHERE number = %s"  # noqa: S608


def _check_not_held(uid: uuid.UUID, number: str) -> bool:
    """True if this exact invoice is here already (repaired by reconciliation); conflicts refuse."""
    row = Rows(_uid_sql(), [number]).first()
    # SQLite stores a uuid as 32 hex digits, PostgreSQL returns a UUID.
    held = None if row is None else uuid.UUID(str(row[0]))
    if held is not None and held != uid:
        raise _refuse(QuarantineReason.CONFLICT, f"number {number} is invoice {held} here")
    return held is not None


Replica = tuple[Invoice, list[InvoiceLine]]


def _prepare(event: IncomingEvent, *, in_bulk: bool) -> Replica | None:
    """The checked replica of an `InvoiceIssued`, built but not written. Raises Poison or
    ApplyLater. None when there is nothing to write (one by one: this exact invoice is here
    already) or, `in_bulk`, when the event needs the one-by-one path (its seller must be
    registered first, or it is a red invoice whose blue invoice must be looked up)."""
    body = verify_issued_signature(event)
    payload = event.payload["invoice"]
    try:
        number = str(payload["number"])
        if number[2:4] != event.seller_region:
            raise _refuse(
                QuarantineReason.WRONG_WRITER,
                f"number {number} belongs to region {number[2:4]}, routed as region "
                f"{event.seller_region}",
            )
        if in_bulk:
            seller = _organisation(payload["seller"]["tax_id"])
            if seller is None or "red_of" in payload:
                return None
        else:
            if _check_not_held(stream_uid(event.stream), number):
                return None
            seller = _seller(payload, event.seller_region)
        invoice = _invoice(event, payload, seller)
        lines = _lines(invoice, payload)
    except (Poison, ApplyLater):
        raise  # a refusal with its own reason (Poison is a ValueError too)
    except (KeyError, TypeError, ArithmeticError, ValueError) as exc:
        raise _refuse(
            QuarantineReason.INVALID_CONTENT, f"unreadable invoice payload: {exc!r}"
        ) from exc
    if canonical_json(invoice_payload(invoice, lines)) != body:
        raise _refuse(
            QuarantineReason.INVALID_CONTENT,
            f"invoice {number} cannot be stored here exactly as signed",
        )
    return invoice, lines


def store_replicas(replicas: list[Replica]) -> None:
    """Write checked replicas, many rows per statement.

    Inserted without the ORM's per-call compiling and without `post_save`: a replica's
    documents are rendered on first download (`documents.get_document`), not by the consumer,
    which would otherwise render three documents for every invoice it receives. No audit entry
    per replica: the ledger event and the inbox row record its arrival, and the consumer's
    batch writes one audit entry for what it applied (`inbox.receive_batch`).
    """
    insert_many([invoice for invoice, _ in replicas])
    lines = []
    for invoice, invoice_lines in replicas:
        for line in invoice_lines:
            line.invoice = invoice  # its key is known now
        lines += invoice_lines
    insert_many(lines)


def prepare_in_bulk(event: IncomingEvent) -> Replica | None:
    """For a consumer's batch (`apply.register_bulk`): the checked replica, or None."""
    return _prepare(event, in_bulk=True)


@register_applier(ISSUED_EVENT, side=FactSide.SELLER, version=1)
def apply_invoice_issued(event: IncomingEvent) -> None:
    """Store the replica of an invoice issued at its home node."""
    replica = _prepare(event, in_bulk=False)
    if replica is not None:
        store_replicas([replica])


@register_own_replay(ISSUED_EVENT)
def replay_own_invoice_issued(event: IncomingEvent) -> None:
    """This node's own invoice, taken back from the hub: stored as a replica is, then counted
    as issuing counted it (number sequence and quota usage)."""
    apply_invoice_issued(event)
    _advance_sequence(str(event.payload["invoice"]["number"]))
    _add_quota(event)


def _advance_sequence(number: str) -> None:
    """The sequence of the number's (year, region, channel) is at least its 15-digit serial."""
    key = {"year": 2000 + int(number[:2]), "region": number[2:4], "channel": number[4]}
    serial = int(number[5:])
    row, created = NumberSequence.objects.get_or_create(**key, defaults={"last_value": serial})
    if not created and row.last_value < serial:
        NumberSequence.objects.filter(pk=row.pk, last_value__lt=serial).update(last_value=serial)


def _add_quota(event: IncomingEvent) -> None:
    """The month's quota usage (授信额度) counts the recovered invoice, as issuing did."""
    invoice = (
        Invoice.objects.filter(uid=stream_uid(event.stream))
        .values_list("seller_id", "issue_date", "total_amount")
        .first()
    )
    if invoice is None:
        return
    seller_id, issue_date, amount = invoice
    if issue_date is None:
        return
    usage, _ = QuotaUsage.objects.get_or_create(
        organisation_id=seller_id, period=issue_date.strftime("%Y%m")
    )
    QuotaUsage.objects.filter(pk=usage.pk).update(used=F("used") + Decimal(amount))


def check_signatures_ahead(events: list[IncomingEvent]) -> None:
    """Start checking the signatures of a batch's `InvoiceIssued` events on a worker thread
    (`lib.signing.check_ahead`), for `verify_issued_signature` to take the answers. Only what
    looks checkable is started: a missing key, a hash that does not match or an odd payload is
    left to `verify_issued_signature`, which refuses it with its reason."""
    checks = []
    for event in events:
        content = event.payload
        if type(content) is not dict or not event.hash_matches():
            continue
        body, key_id = event.canonical_part("invoice"), content.get("key_id")
        signature = content.get("signature")
        if body is None or not isinstance(key_id, str) or not isinstance(signature, str):
            continue
        key = key_of(key_id)
        if key is not None and key.node.node_id == event.writer:
            checks.append((bytes(key.public_key), body, signature))
    signing.check_ahead(checks)


register_bulk(ISSUED_EVENT, prepare_in_bulk, store_replicas, check_signatures_ahead)
