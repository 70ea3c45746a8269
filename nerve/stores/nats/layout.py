"""Where the NATS store keeps what: its buckets and streams, their keys and subjects.

Layout (every name under the URL's ``prefix``, default ``nerve``)::

    KV bucket {prefix}_done            kept the window (the bucket's max age)
        d.{event}.{subscription}       done mark: the unix time it was handled
        f.{event}.{subscription}       failures: the attempt errors, one JSON per line
        p.{event}                      publish record: the event type
    KV bucket {prefix}_dead            kept until taken
        {event}.{subscription}         a dead letter (JSON)
    KV bucket {prefix}_steps           kept the window
        s.{event}.{subscription}       step results {"at": unix time, "v": {step: JSON}}
        c.{event}.{subscription}       counters {"at": ..., "v": {counter: {name: total}}}
    KV bucket {prefix}_kept            kept while the pair has a dead letter or a wait
        s.{event}.{subscription}       the same, for a pair with a dead letter or a wait
        c.{event}.{subscription}
        w.{event}.{subscription}       the ids of the pair's waits (JSON list)
    KV bucket {prefix}_subscriptions   kept for good
        {subscription}                 its pattern
    KV bucket {prefix}_timers          kept until deleted
        t.{timer}                      a timer {"due": unix time, "body": text}
        d.{minute}.{timer}             due index: the timer is due in that minute (unix
                                       time // 60, in decimal), maybe stale (:mod:`.timers`)
        floor                          the earliest minute the due index may hold
    KV bucket {prefix}_waits           kept until removed
        w.{wait}                       a wait (WaitRecord JSON)
        s.{event type}                 the shapes of the waits on the type (JSON list)
        k.{event type}.{key hash}      the ids of the waits on the type and match key
    KV bucket {prefix}_limits          kept until freed or written again (:mod:`.limits`)
        s.{limiter}.{key}              slots: {holder: lease end} (JSON)
        r.{limiter}.{key}              a rate's theoretical arrival time (a float as text)
    stream {prefix}-log                kept history_retention (max age)
        {prefix}.log.ev.{event}        "{published at}\\n{event JSON}", once per event
    stream {prefix}-log-index          kept history_retention (max age)
        {prefix}.log.idx.o.{event}     an outcome (a JSON row), one message per attempt
        {prefix}.log.idx.c.{chain}     [published at, event id]: a chain's events but its root
        {prefix}.log.idx.t.{type}      [published at, event id]: the events of a type

A KV bucket ``B`` is the stream ``KV_B`` on subjects ``$KV.B.<key>``, one message per key
(``nats kv get {prefix}_done <key>`` reads it). Every ``{...}`` above is the string
base64url-encoded without padding (``=`` for the empty string): keys and subject tokens
allow only ``[-/_=a-zA-Z0-9]``, while subscriptions, event and correlation ids, step and
counter names, limiters and their keys may hold any printable character.

Minutes are decimal numbers and key hashes hex (:mod:`.waits`), as they are.

A root event (its event id is its correlation id) has no chain entry: it is found by its
id. Replicas: every bucket and stream takes the URL's ``replicas``, the count the
transport's stream ``{prefix}-events`` has, so the store's state is as durable as the
events it is about.
"""

from __future__ import annotations

import base64
from typing import Final

from nats.js.api import KeyValueConfig, StorageType, StreamConfig

#: Seconds a window-long bucket keeps a message at the least: JetStream reads a max age
#: of 0 as "forever". Shorter windows are kept exact by the times in the values.
MIN_AGE: Final = 1.0
#: JetStream's duplicate window (unused by the store: no message ids) at its least.
_DUPLICATE_WINDOW: Final = 1.0


def token(text: str) -> str:
    """``text`` as one key or subject token (base64url, no padding; ``=`` when empty)."""
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode() or "="


def untoken(found: str) -> str:
    """The string a :func:`token` stands for."""
    if found == "=":
        return ""
    return base64.urlsafe_b64decode(found + "=" * (-len(found) % 4)).decode()


class Bucket:
    """A KV bucket: its stream and the subjects of its keys."""

    __slots__ = ("name", "prefix", "stream")

    def __init__(self, name: str) -> None:
        self.name = name
        self.stream = f"KV_{name}"
        self.prefix = f"$KV.{name}."

    def subject(self, *tokens: str) -> str:
        """The subject of the key made of ``tokens`` (already :func:`token`-encoded)."""
        return self.prefix + ".".join(tokens)

    def tokens(self, subject: str) -> list[str]:
        """The key tokens of one of this bucket's subjects."""
        return subject[len(self.prefix) :].split(".")

    def config(self, *, ttl: float | None, replicas: int, direct: bool) -> KeyValueConfig:
        """The bucket's configuration: ``ttl`` seconds (None: for good), one value per key."""
        return KeyValueConfig(
            bucket=self.name,
            description=f"nerve store: {self.name}",
            history=1,
            ttl=None if ttl is None else max(MIN_AGE, ttl),
            storage=StorageType.FILE,
            replicas=replicas,
            direct=direct,
        )


class Layout:
    """The names of one prefix's buckets, streams and subjects."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.done = Bucket(f"{prefix}_done")
        self.dead = Bucket(f"{prefix}_dead")
        self.steps = Bucket(f"{prefix}_steps")
        self.kept = Bucket(f"{prefix}_kept")
        self.subscriptions = Bucket(f"{prefix}_subscriptions")
        self.timers = Bucket(f"{prefix}_timers")
        self.waits = Bucket(f"{prefix}_waits")
        self.limits = Bucket(f"{prefix}_limits")
        self.log = f"{prefix}-log"
        self.log_index = f"{prefix}-log-index"
        self._event = f"{prefix}.log.ev."
        self._outcome = f"{prefix}.log.idx.o."
        self._chain = f"{prefix}.log.idx.c."
        self._type = f"{prefix}.log.idx.t."

    @property
    def buckets(self) -> tuple[Bucket, ...]:
        return (
            self.done,
            self.dead,
            self.steps,
            self.kept,
            self.subscriptions,
            self.timers,
            self.waits,
            self.limits,
        )

    def streams(self) -> list[str]:
        """Every stream the store makes (for tools and tests that delete them)."""
        return [*(b.stream for b in self.buckets), self.log, self.log_index]

    def event_subject(self, event_id: str) -> str:
        return self._event + token(event_id)

    def outcome_subject(self, event_id: str) -> str:
        return self._outcome + token(event_id)

    def chain_subject(self, correlation_id: str) -> str:
        return self._chain + token(correlation_id)

    def type_subject(self, event_type: str) -> str:
        return self._type + token(event_type)

    def log_config(self, *, retention: float, replicas: int, direct: bool) -> StreamConfig:
        """The stream of logged events (its sequences are the feed's cursors)."""
        return self._stream(self.log, self._event + "*", retention, replicas, direct)

    def index_config(self, *, retention: float, replicas: int, direct: bool) -> StreamConfig:
        """The stream of outcomes, chain entries and type entries."""
        return self._stream(self.log_index, f"{self.prefix}.log.idx.>", retention, replicas, direct)

    def _stream(
        self, name: str, subjects: str, retention: float, replicas: int, direct: bool
    ) -> StreamConfig:
        return StreamConfig(
            name=name,
            description=f"nerve store: the event log under {self.prefix}",
            subjects=[subjects],
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=max(MIN_AGE, retention),
            duplicate_window=_DUPLICATE_WINDOW,
            allow_direct=direct,
        )
