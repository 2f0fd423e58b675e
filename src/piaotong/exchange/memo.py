"""What a consumer's batch remembers between its events (批内记忆), instead of asking again.

A fetched batch of up to a few hundred events is applied in one transaction
(`inbox.receive_batch`). Most of them name the same writer, the same signing key and the same
few organisations; looking each up per event was a third of an event's cost
(docs/benchmarks.md, `bench/sync.py`). Inside `batch_memo()`, `remember(table, key, load)`
loads a value once and returns the remembered one afterwards; outside it, it just loads.

Remembered values must stay true for the rest of the batch, or be forgotten:

- the registry (nodes and keys) changes only through a registry message, which calls
  `forget()`;
- a row found in the database stays there unless the transaction rolls back: the batch calls
  `forget()` whenever a savepoint is rolled back (a refused, parked or failed event), so no
  value written by a rolled-back event is ever returned. Values that were not found (None) are
  remembered only where the caller says so (`remember_missing=True`), for tables whose rows
  appear only through `forget()`-ing paths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_MEMO: ContextVar[dict[str, dict[Any, Any]] | None] = ContextVar(
    "exchange_batch_memo", default=None
)
_MISSING = object()


@contextmanager
def batch_memo() -> Iterator[None]:
    """Remember looked-up values until the block ends (nested blocks share the outer memory)."""
    if _MEMO.get() is not None:
        yield
        return
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def remember(
    table: str, key: Any, load: Callable[[], T | None], *, remember_missing: bool = False
) -> T | None:
    """`load()`'s value for (table, key), loaded once per batch; see the module docstring."""
    memo = _MEMO.get()
    if memo is None:
        return load()
    values = memo.setdefault(table, {})
    value = values.get(key, _MISSING)
    if value is _MISSING:
        value = load()
        if value is not None or remember_missing:
            values[key] = value
    return value  # type: ignore[no-any-return]


def forget() -> None:
    """Drop everything remembered (a rollback or a registry change happened)."""
    memo = _MEMO.get()
    if memo is not None:
        memo.clear()
