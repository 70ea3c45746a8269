"""An OpenAI-compatible server on 127.0.0.1 for the LLM layer's tests, scripted per test.

Plain asyncio HTTP/1.1 (keep-alive, Content-Length bodies): ``/v1/chat/completions`` and
``/v1/embeddings``. Each chat request takes the next scripted :class:`Reply`, or the
``default`` one when the script is empty; with ``refuse_every = n`` every n-th chat request
gets the ``refusal`` instead (a 429 with ``Retry-After``, say). Every request is recorded
with its arrival time and the status it got.
Embeddings are a deterministic fake: a unit vector made from the text's SHA-256.
A ``responder`` (a function of the request body) answers chat requests instead of the
script, for a model whose answer depends on the conversation (tool-calling loops run in
other processes).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    """One scripted answer: a status, a JSON body, headers, and a delay before it."""

    body: dict[str, Any]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival
    wall: float = 0.0  # time.time() on arrival
    status: int = 200  # the status it was answered
    tokens: int = 0  # the usage it was answered (total tokens)


def completion(
    content: str | None = None,
    *,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    tool_calls: list[dict[str, Any]] | None = None,
    model: str = "test-model",
) -> Reply:
    """A chat completion answering ``content`` (or calling ``tool_calls``)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return Reply(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def tool_call(name: str, arguments: dict[str, Any], call_id: str = "call_1") -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


def raw_tool_call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    """A tool call whose arguments are ``arguments`` as sent (malformed JSON, say)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def calling(*calls: dict[str, Any]) -> Reply:
    """A completion that calls ``calls`` (several: parallel tool calls in one turn)."""
    return completion(tool_calls=list(calls))


def error(status: int, message: str = "scripted error", **headers: str) -> Reply:
    """An OpenAI-style error answer (``retry_after="1"`` sets ``Retry-After: 1``)."""
    return Reply(
        {"error": {"message": message, "type": "test", "code": None}},
        status=status,
        headers={k.replace("_", "-"): v for k, v in headers.items()},
    )


def fake_embedding(text: str, dimensions: int = 16) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    vector = [b - 127.5 for b in digest[:dimensions]]
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector]


class OpenAIServer:
    """Start with ``await server.start()``; ``server.url`` is the base URL (``.../v1``)."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default = completion("ok")
        self.responder: Callable[[dict[str, Any]], Reply] | None = None
        self.requests: list[Request] = []
        self.refuse_every = 0
        self.refusal = error(429, "rate limited", retry_after="2")
        self._chats = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.url = ""

    @property
    def chat_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    def then(self, *replies: Reply) -> None:
        """Answer the next chat requests with ``replies``, in order."""
        self.script.extend(replies)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                _method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                body = json.loads(raw) if raw else {}
                request = Request(path, body, headers, time.monotonic(), time.time())
                self.requests.append(request)
                reply = self._answer(path, body)
                request.status = reply.status
                request.tokens = int(reply.body.get("usage", {}).get("total_tokens", 0))
                if reply.delay:
                    await asyncio.sleep(reply.delay)  # a slow model, scripted
                payload = json.dumps(reply.body).encode()
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                writer.write(
                    f"HTTP/1.1 {reply.status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(payload)}\r\n{extra}\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if task is not None:
                self._connections.discard(task)

    def _answer(self, path: str, body: dict[str, Any]) -> Reply:
        if path == "/v1/embeddings":
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            tokens = sum(len(t.split()) for t in texts)
            return Reply(
                {
                    "object": "list",
                    "model": body.get("model", "test-embedding"),
                    "data": [
                        {"object": "embedding", "index": i, "embedding": fake_embedding(t)}
                        for i, t in enumerate(texts)
                    ],
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )
        if path == "/v1/chat/completions":
            self._chats += 1
            if self.refuse_every and self._chats % self.refuse_every == 0:
                return self.refusal
            if self.script:
                return self.script.popleft()
            return self.responder(body) if self.responder is not None else self.default
        return error(404, f"no route {path}")
