"""Request bodies: read within the size limit, parsed as JSON within the depth limit.

:func:`read_body` is the one body reader: the fast path and every route read through it,
straight from the ASGI ``receive`` channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.types import Receive

from nerve.http.problems import HTTPProblem


async def read_body(headers: Mapping[str, str], receive: Receive, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes (on Content-Length, or while streaming).

    Raises:
        HTTPProblem: 413 too large, 400 bad Content-Length or the client gone mid-body.
    """
    declared = headers.get("content-length")
    if declared is not None:
        check_length(declared, limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPProblem(400, "bad_request", "the client went away mid-body")
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(size, limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def check_length(declared: str, limit: int) -> None:
    """Refuse a declared Content-Length over the limit before reading the body.

    Raises:
        HTTPProblem: 413 too large, 400 not a number.
    """
    try:
        size = int(declared)
    except ValueError:
        raise HTTPProblem(400, "bad_request", "Content-Length is not a number") from None
    if size > limit:
        raise too_large(size, limit)


def too_large(size: int, limit: int) -> HTTPProblem:
    """The 413 for a body of ``size`` bytes (or more)."""
    return HTTPProblem(413, "too_large", f"the body has {size} bytes or more; the limit is {limit}")


def parse_json(body: bytes, max_depth: int) -> Any:
    """The JSON in ``body``.

    Raises:
        HTTPProblem: 400 not JSON, 422 nested past ``max_depth``.
    """
    if not body:
        raise HTTPProblem(400, "invalid_json", "the body is empty; send a JSON document")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPProblem(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    if too_deep(value, max_depth):
        raise HTTPProblem(422, "too_deep", f"the JSON nests deeper than {max_depth} levels")
    return value


def too_deep(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` levels in ``value``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if type(item) is dict else item if type(item) is list else ()
        for child in children:
            if type(child) is dict or type(child) is list:
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False
