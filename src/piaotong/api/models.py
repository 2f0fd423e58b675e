"""Idempotency records (幂等键): the first answer to a POST, replayed for every retry."""

from __future__ import annotations

from django.db import models


class IdempotencyRecord(models.Model):
    """One `Idempotency-Key` of one principal.

    Invariants: (principal, key) is unique; the record is written in the same transaction as the
    action it answers, so it exists exactly when the action's effects exist.
    """

    principal = models.CharField(max_length=80)
    key = models.CharField(max_length=200)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=300)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["principal", "key"], name="idempotency_principal_key")
        ]

    def __str__(self) -> str:
        return f"{self.principal} {self.key}"
