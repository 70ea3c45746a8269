"""Signed webhooks (placeholder: being written)."""

from __future__ import annotations

from fastapi import APIRouter

from nerve.http.intake import Intake


def routes(intake: Intake) -> APIRouter:
    return APIRouter(tags=["webhooks"])
