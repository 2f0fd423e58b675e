"""Endpoints under /api/v1/deduction."""

from ninja import Router

router = Router(tags=["deduction"])
