"""Endpoints under /api/v1/verification."""

from ninja import Router

router = Router(tags=["verification"])
