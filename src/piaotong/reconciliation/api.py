"""Endpoints under /api/v1/reconciliation."""

from ninja import Router

router = Router(tags=["reconciliation"])
