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
    """``application/json`` or a ``+json`` type.

    A request without a Content-Type is not taken as JSON: a web page may send one to any
    site without the browser asking that site first (a CORS preflight), which it must do
    for ``application/json``. Refusing it keeps other sites' pages from posting here.
    """
    return media == "application/json" or media.endswith("+json")


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as an ``application/json`` response."""
    return Response(orjson.dumps(body), status, headers, media_type=JSON)
