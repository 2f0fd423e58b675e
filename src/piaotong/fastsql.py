"""Fast statements for the issuing hot path.

The ORM compiles SQL anew for every call; on this project's benchmark machine that costs about
150-200 µs per statement, more than the statement itself. `insert_rows` builds the INSERT once per
(model, row count) and converts values as the ORM would (the backend's own adapters, or the
field's methods for anything unusual), so what lands in the database is identical to
`bulk_create`; `select_models` and `build` make instances as the ORM does, without compiling or
keyword arguments. Use them only where a benchmark shows the need (docs/benchmarks.md);
everywhere else the ORM is the rule.

On PostgreSQL, `pipeline()` sends the statements of a transaction without waiting for each
answer (psycopg's pipeline mode): an issue then costs four round trips (BEGIN, the locking
statements, the writes, COMMIT) instead of one per statement. Inside it, statements whose
answers are needed later are run through `Rows` and read when needed; writes are held back and
sent as one statement; primary keys that inserts get back are set on the objects when the
pipeline ends, and rows that others point at take keys reserved beforehand (`reserve_ids`).
Outside a pipeline, many rows go by COPY (`insert_many`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from operator import attrgetter
from typing import Any, TypeVar

import orjson
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.utils import timezone

from piaotong.fields import EncryptedTextField

M = TypeVar("M", bound=models.Model)


class _Pipeline:
    """Writes held back to go as one statement, and inserts whose keys are read at the end."""

    def __init__(self) -> None:
        # (sql, params, objects whose keys the statement returns, or None)
        self.writes: list[tuple[str, list[Any], Sequence[models.Model] | None]] = []
        # (cursor, [(statement index in the cursor's rows or -1 for all, objects)])
        self.pending: list[tuple[Any, list[tuple[int, Sequence[models.Model]]]]] = []

    def flush(self) -> None:
        """Send the held-back writes: one as it is, several as one statement whose
        data-modifying WITH clauses run in one go (PostgreSQL checks their foreign keys at
        the end of the statement). Each statement costs the server a parse, a plan and an
        executor start, and psycopg an execute: most of a small issue's time otherwise."""
        writes, self.writes = self.writes, []
        if len(writes) == 1:
            sql, params, objs = writes[0]
            cursor = _run(sql, params)
            if objs is None:
                cursor.close()
            else:
                self.pending.append((cursor, [(-1, objs)]))
            return
        if not writes:
            return
        clauses = ", ".join(f"w{i} AS ({sql})" for i, (sql, _p, _o) in enumerate(writes))
        returning = [(i, objs) for i, (_s, _p, objs) in enumerate(writes) if objs is not None]
        # The keys come back tagged with their statement, each statement's in insertion order
        # (the order `insert_rows` relies on, as Django's bulk_create does on PostgreSQL).
        select = " UNION ALL ".join(f"SELECT {i}, * FROM w{i}" for i, _objs in returning)  # noqa: S608
        cursor = _run(
            f"WITH {clauses} {select or 'SELECT 1'}", [v for _s, p, _o in writes for v in p]
        )
        self.pending.append((cursor, returning))

    def read_ids(self) -> None:
        for cursor, targets in self.pending:
            rows = cursor.fetchall()
            for index, objs in targets:
                _set_ids(objs, [row[-1] for row in rows if index < 0 or row[0] == index])

    def close(self) -> None:
        for cursor, _targets in self.pending:
            cursor.close()


_PIPELINE: ContextVar[_Pipeline | None] = ContextVar("fastsql_pipeline", default=None)


@lru_cache(maxsize=256)
def _qmark(sql: str) -> str:
    """The statement with sqlite3's placeholders, converted once (Django does it per call)."""
    return _FORMAT.sub("?", sql).replace("%%", "%")


_FORMAT = re.compile(r"(?<!%)%s")


def _run(sql: str, params: Sequence[Any]) -> Any:
    """Execute on a driver cursor and return it, without Django's cursor wrapper.

    The wrapper costs several µs per statement, a tenth of an issue's statements on SQLite.
    When queries are being logged (DEBUG, `CaptureQueriesContext`) or wrapped
    (`execute_wrapper`), Django's cursor is used, so they see these statements as well.
    Database errors are Django's either way.
    """
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` looks the thread's up
    if db.queries_logged or db.execute_wrappers:
        cursor = db.cursor()
        cursor.execute(sql, params)
        return cursor
    if db.connection is None:
        db.ensure_connection()
    db.validate_no_broken_transaction()
    with db.wrap_database_errors:
        if db.vendor == "sqlite":
            cursor = db.connection.cursor()
            cursor.execute(_qmark(sql), params)
        else:
            cursor = db.create_cursor()
            # A hint: psycopg prepares only when the connection allows it (OPTIONS
            # "prepare_threshold", from PIAOTONG_PG_PREPARE_THRESHOLD; off never prepares).
            cursor.execute(sql, params, prepare=len(params) <= PREPARE_UP_TO)
    return cursor


# Statements of the hot path with at most this many parameters are worth preparing; bigger
# ones are multi-row inserts whose row counts vary, and each count would be prepared anew.
PREPARE_UP_TO = 400


@contextmanager
def pipeline() -> Iterator[None]:
    """Run the block in psycopg's pipeline mode; use it inside `transaction.atomic`.

    Statements are sent without waiting for their answers; the server reports a failed one
    when the block ends, still inside the transaction, which then rolls back. Entered inside
    the transaction, not around it: psycopg synchronises on every change of autocommit while
    in pipeline mode, which would add two round trips. On SQLite (no network) the block runs
    as it is.
    """
    if connection.vendor != "postgresql":
        yield
        return
    connection.ensure_connection()
    state = _Pipeline()
    token = _PIPELINE.set(state)
    try:
        with connection.wrap_database_errors, connection.connection.pipeline():
            yield
            state.flush()
        with connection.wrap_database_errors:
            state.read_ids()
    finally:
        _PIPELINE.reset(token)
        state.close()


def in_pipeline() -> bool:
    return _PIPELINE.get() is not None


class Rows:
    """One statement whose answer is read later: under `pipeline()` it is sent at once and its
    answer arrives with those of the statements sent before the first read. Elsewhere it runs
    and is read at once (SQLite refuses savepoints while a statement has unread rows)."""

    def __init__(self, sql: str, params: Sequence[Any]) -> None:
        self._rows: list[tuple[Any, ...]] | None = None
        state = _PIPELINE.get()
        if state is not None:
            state.flush()  # the writes held back come first
        self._cursor = _run(sql, params)
        if state is None:
            self._read()

    def _read(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            try:
                with connection.wrap_database_errors:
                    self._rows = [tuple(row) for row in self._cursor.fetchall()]
            finally:
                self._cursor.close()
        return self._rows

    def first(self) -> tuple[Any, ...] | None:
        rows = self._read()
        return rows[0] if rows else None

    def all(self) -> list[tuple[Any, ...]]:
        return self._read()


def execute(sql: str, params: Sequence[Any]) -> None:
    """Run a statement whose answer nobody reads; under `pipeline()` it is held back and sent
    with the other writes before the next read or at the end (see `_Pipeline.flush`)."""
    state = _PIPELINE.get()
    if state is not None:
        state.writes.append((sql, list(params), None))
        return
    _run(sql, params).close()


def execute_returning(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """Run one statement with RETURNING and give back its first row, if any."""
    return Rows(sql, params).first()


@lru_cache(maxsize=64)
def _reserve_sql(tables: tuple[str, ...]) -> str:
    sequences = ", ".join(f"nextval(pg_get_serial_sequence('{table}', 'id'))" for table in tables)
    return f"SELECT {sequences} FROM generate_series(1, %s)"  # noqa: S608 - our tables


def reserve_ids(models_: Sequence[type[models.Model]], count: int) -> Rows | None:
    """Reserve `count` primary keys of each model at once (PostgreSQL sequences), for rows that
    other rows of the same pipeline point at. None where keys come only from the insert (SQLite).

    Read with `.all()`: `count` rows of one key per model, in the order of `models_`.
    """
    if connection.vendor != "postgresql":
        return None
    return Rows(_reserve_sql(tuple(m._meta.db_table for m in models_)), [count])


@lru_cache(maxsize=64)
def _fields(model: type[models.Model], with_pk: bool = False) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]


@lru_cache(maxsize=256)
def _insert_sql(model: type[models.Model], rows: int, vendor: str, with_pk: bool) -> str:
    fields = _fields(model, with_pk)
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    one_row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {table} ({columns}) VALUES {', '.join([one_row] * rows)}"  # noqa: S608
    if with_pk:
        return sql
    return f"{sql} RETURNING {connection.ops.quote_name(str(model._meta.pk.column))}"


# Field types whose Python value is already what the database driver takes.
_PLAIN_FIELDS = (
    models.CharField,  # includes EmailField, SlugField
    models.TextField,
    models.IntegerField,  # includes the small, big and positive variants and auto fields
    models.BooleanField,
    models.ForeignKey,  # read through its attname: the id
)


def _jsonb(value: Any) -> Any:
    from psycopg.types.json import Jsonb  # present whenever the vendor is PostgreSQL

    # Django would serialise with the standard library's json; orjson is several times faster
    # on invoice payloads and gives the same JSON for the canonical values we store.
    return None if value is None else Jsonb(value, dumps=orjson.dumps)


Converter = Callable[[models.Model], Any]


def _now(obj: models.Model, attname: str) -> Any:
    """What `pre_save` of an auto-now datetime does on insert: set the attribute to now."""
    value = timezone.now()
    setattr(obj, attname, value)
    return connection.ops.adapt_datetimefield_value(value)


def _converter(field: models.Field[Any, Any], vendor: str) -> Converter:
    """The function turning an instance's attribute into the driver's value for one column.

    Plain columns are read as they are. For the types the hot path writes (aware datetimes,
    dates, Decimals, UUIDs, JSON, empty encrypted text) the value goes straight to the backend's
    own adapter, which is the last step of the ORM's conversion; anything else goes through the
    field's `pre_save` and `get_db_prep_save`, exactly as the ORM would.
    """
    get = attrgetter(field.attname)

    def orm(obj: models.Model) -> Any:
        return field.get_db_prep_save(field.pre_save(obj, True), connection)

    if isinstance(field, EncryptedTextField):
        # The attribute holds the plaintext: only get_db_prep_save encrypts it.
        return lambda obj: v if (v := get(obj)) == "" else orm(obj)
    if isinstance(field, _PLAIN_FIELDS):
        return get
    if isinstance(field, models.JSONField):
        if vendor == "postgresql":
            return lambda obj: _jsonb(field.pre_save(obj, True))
        return orm
    if isinstance(field, models.DateTimeField):
        if field.auto_now or field.auto_now_add:
            return lambda obj: _now(obj, field.attname)
        return lambda obj: (
            connection.ops.adapt_datetimefield_value(v)
            if type(v := get(obj)) is datetime and v.tzinfo is not None
            else orm(obj)
        )
    if isinstance(field, models.DateField):
        if field.auto_now or field.auto_now_add:
            return orm
        return lambda obj: (
            connection.ops.adapt_datefield_value(v) if type(v := get(obj)) is date else orm(obj)
        )
    if isinstance(field, models.DecimalField):
        # For a Decimal, get_prep_value returns an equal Decimal and no backend adapts it.
        return lambda obj: v if type(v := get(obj)) is Decimal or v is None else orm(obj)
    if isinstance(field, models.UUIDField):
        native = connection.features.has_native_uuid_field
        return lambda obj: (
            (v if native else v.hex) if type(v := get(obj)) is uuid.UUID else orm(obj)
        )
    return orm


@lru_cache(maxsize=64)
def _converters(model: type[models.Model], vendor: str, with_pk: bool = False) -> list[Converter]:
    """One function per column, in the order of `_fields`."""
    return [_converter(field, vendor) for field in _fields(model, with_pk)]


@lru_cache(maxsize=64)
def _slots(model: type[models.Model]) -> list[tuple[str, models.Field[Any, Any]]]:
    return [(f.attname, f) for f in model._meta.concrete_fields]


def build(
    model: type[M],
    values: Mapping[str, Any],
    related: Mapping[str, models.Model | None] | None = None,
) -> M:
    """A new instance from column values by attname, built positionally as `from_db` builds
    rows (the ORM's fast path: keyword construction costs about three times as much).

    Missing fields get their defaults; `related` objects (by field name) are set through their
    descriptors, which sets the key and caches the object, as keyword construction does.
    """
    obj = model(*[values[a] if a in values else f.get_default() for a, f in _slots(model)])
    if related:
        for name, value in related.items():
            setattr(obj, name, value)
    return obj


@lru_cache(maxsize=64)
def _select(model: type[models.Model], vendor: str) -> tuple[str, list[str], list[Any]]:
    """SELECT of every concrete column, their attnames, and per column (index, converters,
    column expression) for those the backend or the field converts, as the ORM's compiler does."""
    fields = model._meta.concrete_fields
    table = model._meta.db_table
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(table)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if found:
            converters.append((index, found, column))
    sql = f"SELECT {columns} FROM {connection.ops.quote_name(table)} WHERE "  # noqa: S608
    return sql, [f.attname for f in fields], converters


def select_models(model: type[models.Model], where: str, params: Sequence[Any]) -> list[Any]:
    """Instances of `model` matching a WHERE clause, built as the ORM builds them (every
    column, the same converters, `from_db`) without compiling a query for each call."""
    sql, attnames, converters = _select(model, connection.vendor)
    rows = Rows(sql + where, params).all()
    found = []
    for row in rows:
        values = list(row)
        for index, functions, column in converters:
            for function in functions:
                values[index] = function(values[index], column, connection)
        found.append(model.from_db(connection.alias, attnames, values))
    return found


def _set_ids(objs: Sequence[models.Model], ids: Sequence[Any]) -> None:
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk


def insert_rows(objs: Sequence[models.Model]) -> None:
    """Insert model instances of one model in one statement and set their primary keys.

    Objects that carry a primary key already (see `reserve_ids`) are inserted with it. Under
    `pipeline()` the keys the database assigns are set when the pipeline ends.
    """
    if not objs:
        return
    db = connections[DEFAULT_DB_ALIAS]
    model, with_pk = type(objs[0]), objs[0].pk is not None
    converters = _converters(model, db.vendor, with_pk)
    params = [convert(obj) for obj in objs for convert in converters]
    for obj in objs:
        obj._state.adding, obj._state.db = False, db.alias
    sql = _insert_sql(model, len(objs), db.vendor, with_pk)
    if with_pk:
        execute(sql, params)
        return
    pipelined = _PIPELINE.get()
    if pipelined is None:
        _set_ids(objs, [row[0] for row in Rows(sql, params).all()])
        return
    pipelined.writes.append((sql, params, objs))


# From this many rows on, PostgreSQL gets COPY instead of a multi-row INSERT: the server then
# parses no statement and plans nothing, which halves its work per bulk-issued invoice
# (docs/benchmarks.md). Keys come from the sequence beforehand, since COPY returns nothing.
COPY_FROM_ROWS = 100


def insert_many(objs: Sequence[models.Model], batch: int = 500) -> None:
    """`insert_rows` in batches, keeping statements within SQLite's parameter limit; on
    PostgreSQL, many rows outside a pipeline go in one COPY."""
    db = connections[DEFAULT_DB_ALIAS]
    if len(objs) >= COPY_FROM_ROWS and db.vendor == "postgresql" and _PIPELINE.get() is None:
        _copy_rows(db, objs)
        return
    per_row = len(_fields(type(objs[0]), True)) if objs else 1
    size = max(1, min(batch, 30000 // per_row))
    for start in range(0, len(objs), size):
        insert_rows(objs[start : start + size])


@lru_cache(maxsize=64)
def _copy_sql(model: type[models.Model]) -> str:
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in _fields(model, True))
    return f"COPY {table} ({columns}) FROM STDIN"


def _copy_rows(db: Any, objs: Sequence[models.Model]) -> None:
    model = type(objs[0])
    if objs[0].pk is None:
        reserved = reserve_ids([model], len(objs))
        assert reserved is not None
        _set_ids(objs, [row[0] for row in reserved.all()])
    converters = _converters(model, db.vendor, True)
    db.validate_no_broken_transaction()
    with (
        db.wrap_database_errors,
        db.connection.cursor() as cursor,
        cursor.copy(_copy_sql(model)) as copy,
    ):
        for obj in objs:
            copy.write_row([convert(obj) for convert in converters])
    for obj in objs:
        state = obj._state
        state.adding, state.db = False, db.alias
