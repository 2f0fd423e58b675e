"""Actions of purchase reconciliation (进项核对): import, match by hand, unpair, export, and
select the matched invoices for deduction (勾选抵扣).

An import runs in three steps, each recorded on the job so a page can show its progress: read
and check every row (nothing is written but the counters), match in memory, then store every
item in ONE transaction that also marks the job done and writes the audit row. A refused or
failed import stores its issues and nothing else, so an import is complete or absent, never
half there; a process that dies mid-way leaves a job whose heartbeat stops, which is resumed
from its stored file (`do_resume_stale_import`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from piaotong.accounts.access import Actor
from piaotong.accounts.models import Organisation
from piaotong.accounts.permissions import Action
from piaotong.deduction.actions import MAX_ITEMS as MAX_SELECTION
from piaotong.deduction.actions import SelectionErrors, SelectionItem, do_select_for_deduction
from piaotong.fastsql import insert_many
from piaotong.invoices.models import Invoice
from piaotong.ledger.actions import record_audit
from piaotong.lib.errors import RuleViolation, raise_all
from piaotong.reconciliation.choices import (
    CONFIRMED_STATUSES,
    ImportKind,
    ItemRule,
    ItemStatus,
    JobStatus,
)
from piaotong.reconciliation.importing import Issue, ReadResult, check_tax_id, read_file
from piaotong.reconciliation.matching import (
    BookRecord,
    Decision,
    InvoiceTable,
    PlatformInvoice,
    Reconciliation,
    RecordTable,
    Tolerances,
    compare,
    match,
)
from piaotong.reconciliation.models import ImportIssue, ImportJob, ReconciliationItem

log = logging.getLogger(__name__)

STORE_BATCH = 2000
MAX_DATE_WINDOW = 90
MAX_TOLERANCE = Decimal("100.00")
STALE_AFTER = timedelta(minutes=5)


def max_upload_bytes() -> int:
    return int(getattr(settings, "PIAOTONG_RECONCILE_MAX_UPLOAD_BYTES", 300 * 1024 * 1024))


def upload_dir() -> Path:
    path = Path(settings.VAR_DIR) / "reconciliation"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _require(actor: Actor, action: Action, organisation_id: int) -> None:
    if not actor.can(action, organisation_id):
        raise PermissionDenied(f"{actor.label} may not {action} for organisation {organisation_id}")


# --- Starting an import ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOptions:
    """What the user chose besides the file."""

    kind: str = ImportKind.PURCHASE_RECORDS
    default_seller_tax_id: str = ""
    date_window_days: int = 10
    per_line_tolerance: Decimal = Decimal("0.01")
    per_invoice_tolerance: Decimal = Decimal("1.27")

    def violations(self) -> list[RuleViolation]:
        found = []
        if self.kind not in ImportKind.values:
            found.append(
                RuleViolation(
                    "kind", "unknown_kind", _("Choose purchase records or a supplier list.")
                )
            )
        if not 0 <= self.date_window_days <= MAX_DATE_WINDOW:
            found.append(
                RuleViolation(
                    "date_window_days",
                    "date_window_range",
                    _("The date window must be 0 to %(max)s days."),
                    {"max": MAX_DATE_WINDOW},
                )
            )
        for name in ("per_line_tolerance", "per_invoice_tolerance"):
            value = getattr(self, name)
            if not (Decimal(0) <= value <= MAX_TOLERANCE) or value != value.quantize(
                Decimal("0.01")
            ):
                found.append(
                    RuleViolation(
                        name,
                        "tolerance_range",
                        _("A rounding allowance is 0.00 to %(max)s yuan, in cents."),
                        {"max": MAX_TOLERANCE},
                    )
                )
        if self.default_seller_tax_id:
            try:
                check_tax_id(self.default_seller_tax_id)
            except ValueError:
                found.append(
                    RuleViolation(
                        "default_seller_tax_id",
                        "invalid_tax_id",
                        _("A taxpayer id has 15, 17, 18 or 20 letters and digits."),
                    )
                )
        return found

    def matches(self, job: ImportJob) -> bool:
        return (
            job.kind == self.kind
            and job.default_seller_tax_id == self.default_seller_tax_id
            and job.date_window_days == self.date_window_days
            and job.per_line_tolerance == self.per_line_tolerance
            and job.per_invoice_tolerance == self.per_invoice_tolerance
        )


def _store_upload(source: IO[bytes], uid: uuid.UUID) -> tuple[Path, str, int]:
    """Copy the upload under VAR_DIR in chunks, hashing it; refuse files over the limit."""
    path, digest, size = upload_dir() / f"{uid}.upload", hashlib.sha256(), 0
    limit = max_upload_bytes()
    with path.open("wb") as target:
        while chunk := source.read(1 << 20):
            size += len(chunk)
            if size > limit:
                target.close()
                path.unlink(missing_ok=True)
                raise RuleViolation(
                    "file",
                    "file_too_large",
                    _("The file is larger than %(mb)s MB. Split it into smaller files."),
                    {"mb": limit // (1024 * 1024)},
                )
            digest.update(chunk)
            target.write(chunk)
    if size == 0:
        path.unlink(missing_ok=True)
        raise RuleViolation("file", "empty_upload", _("The file is empty. Choose the right file."))
    return path, digest.hexdigest(), size


def do_create_import_job(
    actor: Actor,
    organisation: Organisation,
    source: IO[bytes],
    file_name: str,
    options: ImportOptions,
    idempotency_key: str = "",
) -> tuple[ImportJob, bool]:
    """Store the uploaded file and queue its import; returns (job, created).

    With an idempotency key, the same file and options again return the first job (created
    False); another file or other options under the same key are refused.
    """
    _require(actor, Action.RECONCILE_PURCHASES, organisation.pk)
    raise_all(options.violations())
    uid = uuid.uuid4()
    path, sha256, size = _store_upload(source, uid)
    if idempotency_key:
        existing = ImportJob.objects.filter(
            idempotency_principal=actor.principal, idempotency_key=idempotency_key
        ).first()
        if existing is not None:
            path.unlink(missing_ok=True)
            if existing.file_sha256 != sha256 or not options.matches(existing):
                raise IdempotencyConflict()
            return existing, False
    try:
        with transaction.atomic():
            job = ImportJob.objects.create(
                uid=uid,
                organisation=organisation,
                kind=options.kind,
                file_name=Path(file_name).name[:255] or "upload",
                file_sha256=sha256,
                file_size=size,
                stored_path=str(path),
                default_seller_tax_id=options.default_seller_tax_id.strip().upper(),
                per_line_tolerance=options.per_line_tolerance,
                per_invoice_tolerance=options.per_invoice_tolerance,
                date_window_days=options.date_window_days,
                created_by=actor.user,
                created_by_label=actor.label,
                idempotency_principal=actor.principal if idempotency_key else "",
                idempotency_key=idempotency_key,
            )
            record_audit(
                actor,
                "reconciliation.import_started",
                f"reconciliation:{job.uid}",
                organisation.pk,
                {"file": job.file_name, "sha256": sha256, "size": size, "kind": job.kind},
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return job, True


class IdempotencyConflict(RuleViolation):
    def __init__(self) -> None:
        super().__init__(
            "Idempotency-Key",
            "idempotency_key_reused",
            _(
                "This Idempotency-Key was used for another file or other options; use a new key "
                "for a new import."
            ),
        )


# --- Running an import ----------------------------------------------------------------------------


def _touch(job_id: int, **fields: Any) -> None:
    """Progress bookkeeping on the job row (no domain fact, not audited)."""
    ImportJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now(), **fields)


def do_run_import(job_id: int) -> ImportJob | None:
    """Read, check, match and store one queued import; None if another runner claimed it.

    Runs in a background thread or a management command, never inside a request's transaction.
    """
    claimed = ImportJob.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
        status=JobStatus.READING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    if not claimed:
        return None
    job = ImportJob.objects.select_related("organisation").get(pk=job_id)
    try:
        _run(job)
    except Exception as error:
        log.exception("reconciliation import %s failed", job.uid)
        _refuse(
            job, ReadResult(), [Issue("internal_error", params={"error": type(error).__name__})]
        )
    finally:
        if job.stored_path:
            Path(job.stored_path).unlink(missing_ok=True)
    job.refresh_from_db()
    return job


def _run(job: ImportJob) -> None:
    def progress(read: int, total: int) -> None:
        _touch(job.pk, rows_read=read, rows_total=max(total, read))

    result = read_file(
        Path(job.stored_path), default_seller_tax_id=job.default_seller_tax_id, progress=progress
    )
    if not result.ok:
        _refuse(job, result, [])
        return
    _touch(
        job.pk, status=JobStatus.MATCHING, rows_read=result.rows_read, rows_total=result.rows_read
    )
    tolerances = Tolerances(
        per_line=job.per_line_tolerance,
        per_invoice=job.per_invoice_tolerance,
        date_window_days=job.date_window_days,
    )
    period = _period(result.records, job.date_window_days)
    invoices = received_invoices(job.organisation_id, *period)
    reconciliation = match(result.records, invoices, tolerances)
    _touch(job.pk, status=JobStatus.STORING)
    _store(job, result, reconciliation, period)


def _period(records: RecordTable, window: int) -> tuple[date, date]:
    """The invoices compared: issued from the earliest record's date to the latest's, widened
    by the date window (a fuzzy-number match needs the same date, the window allows more)."""
    first, last = records.period()
    return first - timedelta(days=window), last + timedelta(days=window)


def received_invoices(organisation_id: int, first: date, last: date) -> InvoiceTable:
    """Invoices received by the organisation (it is the buyer), issued in [first, last], as a
    column table (a million of them fit in about 130 MB)."""
    rows = (
        Invoice.objects.filter(
            buyer_id=organisation_id, number__isnull=False, issue_date__range=(first, last)
        )
        .annotate(line_count=Count("lines"))
        .order_by("issue_date", "number")
        .values_list(
            "id",
            "number",
            "issue_date",
            "seller_tax_id",
            "seller_name",
            "total_amount",
            "total_tax",
            "total_with_tax",
            "line_count",
        )
    )
    table = InvoiceTable()
    for row in rows.iterator(chunk_size=5000):
        table.add(*row)  # type: ignore[arg-type]
    return table


def _owner(job: ImportJob) -> Actor:
    """The audit entries of a background run name the user who started the import."""
    return Actor(user=job.created_by)


def _refuse(job: ImportJob, result: ReadResult, extra: list[Issue]) -> None:
    issues = [*result.issues, *extra]
    with transaction.atomic():
        ImportIssue.objects.filter(job=job).delete()
        ImportIssue.objects.bulk_create(
            [
                ImportIssue(
                    job=job,
                    row=issue.row,
                    column=issue.column[:100],
                    code=issue.code,
                    value=issue.value[:200],
                    params=issue.params,
                )
                for issue in issues
            ],
            batch_size=STORE_BATCH,
        )
        ImportJob.objects.filter(pk=job.pk).update(
            status=JobStatus.FAILED,
            error_count=result.issue_count + len(extra),
            rows_read=result.rows_read,
            notes=[{"code": n.code, "params": n.params} for n in result.notes],
            finished_at=timezone.now(),
            stored_path="",
        )
        record_audit(
            _owner(job),
            "reconciliation.import_refused",
            f"reconciliation:{job.uid}",
            job.organisation_id,
            {"file": job.file_name, "issues": result.issue_count + len(extra)},
        )


def _item_for(
    job: ImportJob,
    decision: Decision,
    records: Sequence[BookRecord],
    invoices: Sequence[PlatformInvoice],
) -> ReconciliationItem:
    item = ReconciliationItem(
        job=job,
        status=decision.status.value,
        rule=decision.rule.value,
        diffs=[[d.field, d.book, d.platform, d.delta] for d in decision.diffs],
        notes=decision.notes,
    )
    if decision.record is not None:
        record = records[decision.record]
        item.row, item.number, item.invoice_key = record.row, record.number[:40], record.key
        item.issue_date, item.seller_tax_id = record.issue_date, record.seller_tax_id
        item.seller_name = record.seller_name
        item.amount, item.tax, item.total = record.amount, record.tax, record.total
    if decision.invoice is not None:
        item.invoice_id = invoices[decision.invoice].id
    return item


def _store(
    job: ImportJob,
    result: ReadResult,
    reconciliation: Reconciliation,
    period: tuple[date, date],
) -> None:
    """Every item, the job's summary and the audit row in one transaction. Decisions are made
    and written STORE_BATCH at a time, so only one batch of items is ever in memory.

    `fastsql.insert_many` instead of `bulk_create`: the same rows, written 2.3 times as fast
    (26.2 s -> 11.2 s for 100,000 items on SQLite, bench/reconcile.py --big, docs/benchmarks.md);
    on PostgreSQL it uses COPY."""
    summary = reconciliation.summary()
    records, invoices = reconciliation.records, reconciliation.invoices
    with transaction.atomic():
        batch: list[ReconciliationItem] = []
        for decision in reconciliation:
            batch.append(_item_for(job, decision, records, invoices))
            if len(batch) == STORE_BATCH:
                insert_many(batch)
                batch = []
        insert_many(batch)
        ImportJob.objects.filter(pk=job.pk).update(
            status=JobStatus.DONE,
            rows_read=result.rows_read,
            rows_total=result.rows_read,
            notes=[{"code": n.code, "params": n.params} for n in result.notes],
            summary=summary,
            period_from=period[0],
            period_to=period[1],
            finished_at=timezone.now(),
            stored_path="",
        )
        record_audit(
            _owner(job),
            "reconciliation.imported",
            f"reconciliation:{job.uid}",
            job.organisation_id,
            {"file": job.file_name, "rows": result.rows_read, "summary": summary},
        )


def do_resume_stale_import(job: ImportJob) -> bool:
    """Queue again a job whose runner stopped (its heartbeat is older than STALE_AFTER).

    Nothing of a running job is stored before its final transaction, so it can start over from
    its file. Returns whether this call re-queued it (a conditional update: one winner).
    """
    cutoff = timezone.now() - STALE_AFTER
    if not job.stored_path or not Path(job.stored_path).exists():
        return False
    return bool(
        ImportJob.objects.filter(
            pk=job.pk,
            status__in=[JobStatus.READING, JobStatus.MATCHING, JobStatus.STORING],
            heartbeat_at__lt=cutoff,
        ).update(status=JobStatus.QUEUED, heartbeat_at=timezone.now())
    )


# --- Deciding by hand -------------------------------------------------------------------------------


def _refresh_summary(job: ImportJob) -> None:
    counts = dict(
        ReconciliationItem.objects.filter(job=job)
        .order_by()
        .values_list("status")
        .annotate(count=Count("id"))
        .values_list("status", "count")
    )
    ImportJob.objects.filter(pk=job.pk).update(summary=counts)
    job.summary = counts


def _require_done(job: ImportJob) -> None:
    if job.status != JobStatus.DONE:
        raise RuleViolation(
            "job",
            "job_not_done",
            _("This import is not finished; wait until its results are shown."),
        )


def platform_invoice(invoice: Invoice) -> PlatformInvoice:
    assert invoice.number is not None and invoice.issue_date is not None
    return PlatformInvoice(
        id=invoice.pk,
        number=invoice.number,
        issue_date=invoice.issue_date,
        seller_tax_id=invoice.seller_tax_id,
        seller_name=invoice.seller_name,
        amount=invoice.total_amount,
        tax=invoice.total_tax,
        total=invoice.total_with_tax,
        lines=invoice.lines.count(),
    )


def book_record(item: ReconciliationItem) -> BookRecord:
    assert item.row is not None and item.issue_date is not None
    return BookRecord(
        row=item.row,
        number=item.number,
        key=item.invoice_key,
        issue_date=item.issue_date,
        seller_tax_id=item.seller_tax_id,
        seller_name=item.seller_name,
        amount=item.amount,
        tax=item.tax,
        total=item.total,
    )


def do_match_manually(
    actor: Actor, item: ReconciliationItem, invoice: Invoice
) -> ReconciliationItem:
    """Pair a row that has no invoice with a received invoice not paired in this import."""
    job = item.job
    _require(actor, Action.RECONCILE_PURCHASES, job.organisation_id)
    _require_done(job)
    if invoice.buyer_id != job.organisation_id or invoice.number is None:
        raise RuleViolation(
            "invoice",
            "not_received",
            _("Invoice %(number)s was not received by %(name)s; choose one of its invoices."),
            {"number": invoice.number or "-", "name": job.organisation.name},
        )
    with transaction.atomic():
        item = ReconciliationItem.objects.select_for_update().get(pk=item.pk)
        if item.row is None or item.invoice_id is not None:
            raise RuleViolation(
                "row",
                "row_already_paired",
                _("This row is already paired; unpair it first."),
            )
        other = (
            ReconciliationItem.objects.select_for_update().filter(job=job, invoice=invoice).first()
        )
        if other is not None and other.row is not None:
            raise RuleViolation(
                "invoice",
                "invoice_already_paired",
                _("Invoice %(number)s is already paired with row %(row)s; unpair that first."),
                {"number": invoice.number, "row": other.row},
            )
        if other is not None:
            other.delete()
        diffs = compare(book_record(item), platform_invoice(invoice))
        item.invoice = invoice
        item.status, item.rule = ItemStatus.MANUAL, ItemRule.MANUAL
        item.diffs = [[d.field, d.book, d.platform, d.delta] for d in diffs]
        item.notes = {"by": actor.label}
        item.decided_by_label, item.decided_at = actor.label, timezone.now()
        item.save()
        _refresh_summary(job)
        record_audit(
            actor,
            "reconciliation.matched_manually",
            f"reconciliation:{job.uid}",
            job.organisation_id,
            {"row": item.row, "invoice": invoice.number, "differs": [d.field for d in diffs]},
        )
    return item


def do_unmatch(actor: Actor, item: ReconciliationItem) -> ReconciliationItem:
    """Split a pair: the row becomes missing on the platform, the invoice missing in the books."""
    job = item.job
    _require(actor, Action.RECONCILE_PURCHASES, job.organisation_id)
    _require_done(job)
    with transaction.atomic():
        item = (
            ReconciliationItem.objects.select_for_update(of=("self",))
            .select_related("invoice")
            .get(pk=item.pk)
        )
        if not item.is_pair:
            raise RuleViolation("row", "not_paired", _("This row is not paired with an invoice."))
        invoice, before = item.invoice, item.status
        assert invoice is not None
        notes = {"unmatched_by": actor.label}
        item.invoice = None
        item.status, item.rule = ItemStatus.MISSING_ON_PLATFORM, ItemRule.NO_INVOICE
        item.diffs, item.notes = [], notes
        item.decided_by_label, item.decided_at = actor.label, timezone.now()
        item.save()
        ReconciliationItem.objects.create(
            job=job,
            invoice=invoice,
            status=ItemStatus.MISSING_IN_BOOKS,
            rule=ItemRule.NO_RECORD,
            notes=notes,
            decided_by_label=actor.label,
            decided_at=item.decided_at,
        )
        _refresh_summary(job)
        record_audit(
            actor,
            "reconciliation.unmatched",
            f"reconciliation:{job.uid}",
            job.organisation_id,
            {"row": item.row, "invoice": invoice.number, "was": before},
        )
    return item


def do_record_results_export(actor: Actor, job: ImportJob, rows: int, status: str) -> None:
    _require(actor, Action.VIEW_PURCHASES, job.organisation_id)
    with transaction.atomic():
        record_audit(
            actor,
            "reconciliation.exported",
            f"reconciliation:{job.uid}",
            job.organisation_id,
            {"rows": rows, "status": status},
        )


# --- Deduction ---------------------------------------------------------------------------------------


def confirmed_invoices(job: ImportJob) -> Iterable[Invoice]:
    """Invoices paired exactly or by hand in this import (suggestions need a person first)."""
    return Invoice.objects.filter(
        pk__in=ReconciliationItem.objects.filter(
            job=job, status__in=CONFIRMED_STATUSES, invoice__isnull=False
        ).values("invoice_id")
    ).order_by("issue_date", "number")


@dataclass(frozen=True)
class DeductionOutcome:
    """How many invoices were selected, and those left out with the reasons (zh/en text)."""

    selected: int
    skipped: list[tuple[str, list[RuleViolation]]]


def do_select_matched_for_deduction(
    actor: Actor, job: ImportJob, period: str, *, skip_refused: bool = False
) -> DeductionOutcome:
    """Select every invoice paired exactly or by hand in this import for deduction (勾选抵扣) in
    `period`, through the deduction app's own action, all in one transaction.

    The deduction action refuses a whole batch when one invoice cannot be selected (already
    selected, not deductible, red-flushed ...). By default that refusal stands and nothing is
    selected; with `skip_refused` those invoices are left out and reported, the rest selected.
    """
    _require(actor, Action.RECONCILE_PURCHASES, job.organisation_id)
    _require_done(job)
    invoices = list(confirmed_invoices(job))
    if not invoices:
        raise RuleViolation(
            "items",
            "nothing_matched",
            _("No invoice of this import is paired exactly or by hand; confirm pairs first."),
        )
    skipped: list[tuple[str, list[RuleViolation]]] = []
    selected = 0
    with transaction.atomic():
        for start in range(0, len(invoices), MAX_SELECTION):
            batch = invoices[start : start + MAX_SELECTION]
            selected += _select_batch(actor, job, period, batch, skipped, skip_refused)
        record_audit(
            actor,
            "reconciliation.selected_for_deduction",
            f"reconciliation:{job.uid}",
            job.organisation_id,
            {"period": period, "selected": selected, "skipped": [n for n, _ in skipped]},
        )
    return DeductionOutcome(selected, skipped)


def _select_batch(
    actor: Actor,
    job: ImportJob,
    period: str,
    batch: list[Invoice],
    skipped: list[tuple[str, list[RuleViolation]]],
    skip_refused: bool,
) -> int:
    try:
        with transaction.atomic():
            items = [SelectionItem(invoice, deduct=True) for invoice in batch]
            return len(do_select_for_deduction(actor, job.organisation, period, items))
    except SelectionErrors as refused:
        if not skip_refused:
            raise
        for index, violations in sorted(refused.items.items()):
            skipped.append((batch[index].number or "", violations))
        rest = [invoice for index, invoice in enumerate(batch) if index not in refused.items]
        if not rest:
            return 0
        with transaction.atomic():
            items = [SelectionItem(invoice, deduct=True) for invoice in rest]
            return len(do_select_for_deduction(actor, job.organisation, period, items))
