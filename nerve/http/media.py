"""Media types: what a request's ``Content-Type`` says, and the JSON responses the app sends."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import Response

JSON = "application/json"


def media_type_of(headers: Mapping[str, str]) -> str:
    """The request's media type without parameters, lower case ('' when absent)."""
    content_type: str = headers.get("content-type", "")
    return content_type.partition(";")[0].strip().lower()


def is_json(media: str) -> bool:
    """JSON, a +json type, or no Content-Type at all (taken as JSON)."""
    return media in ("", "application/json") or media.endswith("+json")


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as an ``application/json`` response."""
    return Response(orjson.dumps(body), status, headers, media_type=JSON)
