"""Encrypted model fields (加密字段): sensitive values stored as AES-256-GCM tokens.

Bank accounts, natural-person buyers' phone and email, and TOTP secrets are read and written as
plain strings through the ORM, but the column holds a token of `piaotong.lib.fieldcrypto`
under the keyring `settings.PIAOTONG_FIELD_KEYS`; the column's context is
``<app label>.<model>.<field>``. Empty strings and NULL are stored as they are. Tokens are
randomised, so the only lookups are `isnull` and equality with the empty string.

Renaming a model or field changes the default context: pass the old one as `context=` (or
re-encrypt the column) so existing tokens still decrypt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django import forms
from django.apps import apps
from django.conf import settings
from django.core import validators
from django.core.exceptions import FieldError
from django.db import connection, models, transaction
from django.db.models import lookups
from django.utils.functional import cached_property

from piaotong.lib.fieldcrypto import Keyring, is_token

KEYS_SETTING = "PIAOTONG_FIELD_KEYS"


@lru_cache(maxsize=4)
def _parsed(text: str) -> Keyring:
    return Keyring.parse(text, source=KEYS_SETTING)


def field_keyring() -> Keyring:
    """The keyring of the current settings (re-parsed only when the setting changes)."""
    return _parsed(getattr(settings, KEYS_SETTING, ""))


class _EmptyOnlyExact(lookups.Exact):
    def get_prep_lookup(self) -> Any:
        if self.rhs not in ("", None):
            raise FieldError(_lookup_error(self.lhs.target, "exact"))
        return super().get_prep_lookup()


def _lookup_error(field: Any, lookup_name: str) -> str:
    return (
        f"{field.model.__name__}.{field.name} is encrypted and cannot be filtered with "
        f"{lookup_name!r}: tokens are randomised. Use isnull, or equality with '' to find blank "
        "values; otherwise filter in Python after loading the rows."
    )


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A text value stored encrypted; `max_length` and validators apply to the plaintext.

    Invariant: every non-empty value in the column is a token for this column's context.
    """

    description = "Text encrypted at rest"

    def __init__(self, *args: Any, context: str | None = None, **kwargs: Any) -> None:
        self.context_override = context
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        # Only the context: key material lives in settings, never in migrations or reprs.
        name, path, args, kwargs = super().deconstruct()
        if self.context_override is not None:
            kwargs["context"] = self.context_override
        return name, path, args, kwargs

    @property
    def context(self) -> str:
        return self.context_override or f"{self.model._meta.label_lower}.{self.name}"

    @cached_property
    def validators(self) -> list[Callable[[Any], None]]:
        extra = [validators.MaxLengthValidator(self.max_length)] if self.max_length else []
        return [*super().validators, *extra]

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return self._decrypt(value)

    # `to_python` is the inherited one: values from forms, fixtures and code are plaintext. It
    # does not decrypt, and `get_prep_value` encrypts whatever it is given, so a phone number
    # typed as "pt1:..." is stored encrypted like any other and never trusted as a token.

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return field_keyring().encrypt(value, self.context)

    def _decrypt(self, value: str | None) -> str | None:
        if not value:
            return value
        if not is_token(value):
            raise ValueError(
                f"{self.context} holds an unencrypted value: run `piaotong migrate`, then "
                "`piaotong fieldkeys rotate`, which encrypt such values"
            )
        return field_keyring().decrypt(value, self.context)

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        if lookup_name == "exact":
            return _EmptyOnlyExact
        # None rather than an error: Django then asks get_transform, which explains; the type
        # checker's Django plugin also asks here and must not be stopped by an exception.
        return None

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(_lookup_error(self, lookup_name))

    def formfield(self, **kwargs: Any) -> Any:
        # A one-line input like the CharField it replaces, not a textarea.
        return super().formfield(**{"form_class": forms.CharField, "widget": None, **kwargs})


# --- Re-encryption (rotation and the data migrations) ---


@dataclass(frozen=True)
class Column:
    """One encrypted column, described without the model class (so migrations can use it)."""

    table: str
    pk: str
    column: str
    context: str


def encrypted_columns() -> Iterator[tuple[type[models.Model], Column]]:
    """Every encrypted column of every installed model."""
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, EncryptedTextField):
                yield (
                    model,
                    Column(
                        model._meta.db_table,
                        str(model._meta.pk.column),
                        str(field.column),
                        field.context,
                    ),
                )


def reencrypt_column(
    column: Column,
    keyring: Keyring,
    batch: int = 500,
    progress: Callable[[int, int], None] | None = None,
    schema_editor: Any = None,
) -> int:
    """Encrypt under the current key every value of `column` that is not already; the count.

    Plaintext (rows written before the column was encrypted) is encrypted too. `progress`
    gets the rows scanned and changed so far after each batch.
    """

    def rewrite(value: str) -> str | None:
        if keyring.is_current(value):
            return None
        plain = keyring.decrypt(value, column.context) if is_token(value) else value
        return keyring.encrypt(plain, column.context)

    return _rewrite_column(column, rewrite, batch, progress, schema_editor)


def _rewrite_column(
    column: Column,
    rewrite: Callable[[str], str | None],
    batch: int,
    progress: Callable[[int, int], None] | None,
    schema_editor: Any,
) -> int:
    """Replace each non-empty value by `rewrite(value)` unless that is None; the count.

    Raw SQL on purpose: only the stored bytes change, never the plaintext, and migrations
    call this without model classes. Each batch is its own transaction, walked in primary-key
    order; a row is updated only if it still holds the value read, so a concurrent edit is
    never overwritten.
    """
    conn = schema_editor.connection if schema_editor is not None else connection
    q = conn.ops.quote_name
    table, pk, col = q(column.table), q(column.pk), q(column.column)
    select = f"SELECT {pk}, {col} FROM {table} WHERE {pk} > %s AND {col} <> '' ORDER BY {pk} LIMIT {int(batch)}"  # noqa: S608 - quoted names of our own tables
    update = f"UPDATE {table} SET {col} = %s WHERE {pk} = %s AND {col} = %s"  # noqa: S608
    scanned, changed, last = 0, 0, None
    while True:
        with transaction.atomic(using=conn.alias), conn.cursor() as cursor:
            cursor.execute(select, [last if last is not None else -1])
            rows = cursor.fetchall()
            for row_pk, value in rows:
                fresh = rewrite(value)
                if fresh is not None:
                    cursor.execute(update, [fresh, row_pk, value])
                    changed += cursor.rowcount
        if not rows:
            return changed
        scanned, last = scanned + len(rows), rows[-1][0]
        if progress is not None:
            progress(scanned, changed)


def encrypt_plaintext(*columns: Column) -> Callable[[Any, Any], None]:
    """A RunPython function encrypting the plaintext in `columns`; tokens are left alone."""

    def forwards(apps: Any, schema_editor: Any) -> None:
        keyring = field_keyring()
        for column in columns:

            def rewrite(value: str, context: str = column.context) -> str | None:
                return None if is_token(value) else keyring.encrypt(value, context)

            _rewrite_column(column, rewrite, 500, None, schema_editor)

    return forwards


def decrypt_to_plaintext(*columns: Column) -> Callable[[Any, Any], None]:
    """The reverse RunPython function: the plaintext back into `columns`."""

    def backwards(apps: Any, schema_editor: Any) -> None:
        keyring = field_keyring()
        for column in columns:

            def rewrite(value: str, context: str = column.context) -> str | None:
                return keyring.decrypt(value, context) if is_token(value) else None

            _rewrite_column(column, rewrite, 500, None, schema_editor)

    return backwards
