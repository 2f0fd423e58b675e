"""Endpoints under /api/v1/exchange."""

from ninja import Router

router = Router(tags=["exchange"])
