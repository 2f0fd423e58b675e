"""Fast inserts for the issuing hot path.

The ORM compiles SQL anew for every call; on this project's benchmark machine that costs about
150-200 µs per statement, more than the statement itself. `insert_rows` builds the INSERT once per
(model, row count) and converts values with the same field methods the ORM uses, so what lands in
the database is identical to `bulk_create`. Use it only where a benchmark shows the need
(docs/benchmarks.md); everywhere else the ORM is the rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import attrgetter
from typing import Any

import orjson
from django.db import connection, models

from piaotong.fields import EncryptedTextField


@lru_cache(maxsize=64)
def _fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [f for f in model._meta.concrete_fields if not f.primary_key]


@lru_cache(maxsize=256)
def _insert_sql(model: type[models.Model], rows: int, vendor: str) -> str:
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in _fields(model))
    one_row = "(" + ", ".join(["%s"] * len(_fields(model))) + ")"
    pk = connection.ops.quote_name(str(model._meta.pk.column))
    return f"INSERT INTO {table} ({columns}) VALUES {', '.join([one_row] * rows)} RETURNING {pk}"  # noqa: S608


# Field types whose Python value is already what the database driver takes.
_PLAIN_FIELDS = (
    models.CharField,  # includes EmailField, SlugField
    models.TextField,
    models.IntegerField,  # includes the small, big and positive variants
    models.BooleanField,
    models.ForeignKey,  # read through its attname: the id
)


def _jsonb(value: Any) -> Any:
    from psycopg.types.json import Jsonb  # present whenever the vendor is PostgreSQL

    # Django would serialise with the standard library's json; orjson is several times faster
    # on invoice payloads and gives the same JSON for the canonical values we store.
    return None if value is None else Jsonb(value, dumps=orjson.dumps)


@lru_cache(maxsize=64)
def _converters(model: type[models.Model], vendor: str) -> list[Callable[[models.Model], Any]]:
    """One function per column turning an instance's attribute into the driver's value.

    Plain columns are read as they are; auto-now dates, JSON and anything else go through the
    field's own `pre_save` and `get_db_prep_save`, exactly as the ORM would.
    """
    converters: list[Callable[[models.Model], Any]] = []
    for field in _fields(model):
        # Encrypted fields are TextFields, but their attribute holds the plaintext: they must
        # go through get_db_prep_save, which encrypts, or plaintext would reach the table.
        if isinstance(field, _PLAIN_FIELDS) and not isinstance(field, EncryptedTextField):
            converters.append(attrgetter(field.attname))
        elif isinstance(field, models.JSONField) and vendor == "postgresql":
            converters.append(lambda obj, f=field: _jsonb(f.pre_save(obj, True)))  # type: ignore[misc]
        else:
            converters.append(
                lambda obj, f=field: f.get_db_prep_save(f.pre_save(obj, True), connection)  # type: ignore[misc]
            )
    return converters


def insert_rows(objs: Sequence[models.Model]) -> None:
    """Insert model instances of one model in one statement and set their primary keys."""
    if not objs:
        return
    model = type(objs[0])
    converters = _converters(model, connection.vendor)
    params = [convert(obj) for obj in objs for convert in converters]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(model, len(objs), connection.vendor), params)
        ids = [row[0] for row in cursor.fetchall()]
    for obj, pk in zip(objs, ids, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = connection.alias


def execute_returning(sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """Run one statement with RETURNING and give back its first row, if any."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else tuple(row)


def insert_many(objs: Sequence[models.Model], batch: int = 500) -> None:
    """`insert_rows` in batches, keeping statements within SQLite's parameter limit."""
    per_row = len(_fields(type(objs[0]))) if objs else 1
    size = max(1, min(batch, 30000 // per_row))
    for start in range(0, len(objs), size):
        insert_rows(objs[start : start + size])
