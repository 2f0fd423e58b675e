"""Endpoints under /api/v1/filing."""

from ninja import Router

router = Router(tags=["filing"])
