"""What only the NATS store has: its URL, its buckets and streams on the server, keys for
any name, races settled by compare-and-set, and coming back from a broker restart.
``drop_nats_store(url)`` deletes what one test made (the contract suite uses it too)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

import nats
import nats.js.errors
import pytest

from nerve import DeadLetter, DeliveryState, Event, Settings, StoreError, clock
from nerve.connections.nats import nats_options, nats_prefix
from nerve.exceptions import ConfigurationError, MissingDependency
from nerve.records import AttemptError, Timer, WaitRecord
from nerve.stores import store_from_url
from nerve.stores.nats import NATSStore
from nerve.stores.nats.layout import MIN_AGE, Layout, token, untoken
from nerve.stores.nats.timers import minute
from tests.servers import answers, free_ports, wait_up
from tests.stores.test_store_from_url import NotInstalled

T = TypeVar("T")

NATS_SERVER = "/usr/sbin/nats-server"


async def drop_nats_store(url: str) -> None:
    """Delete every bucket and stream of a ``nats://`` URL's prefix (the store's)."""
    server, options = nats_options(url)
    layout = Layout(nats_prefix(options))
    client = await nats.connect(server, max_reconnect_attempts=0, connect_timeout=5)
    try:
        js = client.jetstream(timeout=10)
        for stream in layout.streams():
            with suppress(nats.js.errors.NotFoundError):  # the test made nothing there
                await js.delete_stream(stream)
    finally:
        await client.close()


@pytest.fixture
async def url() -> AsyncIterator[str]:
    found = f"nats://127.0.0.1:4222?prefix=ns{uuid.uuid4().hex[:12]}"
    yield found
    await drop_nats_store(found)


@pytest.fixture
async def store(url: str) -> AsyncIterator[NATSStore]:
    opened = NATSStore(url)
    await opened.open()
    yield opened
    await opened.close()


def error(attempt: int, message: str = "boom") -> AttemptError:
    return AttemptError(attempt=attempt, type="RuntimeError", message=message, traceback="")


class Later(clock.Clock):
    """The system clock, ``ahead`` seconds later."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> float:
        return super().time() + self.ahead


@pytest.fixture
def later() -> Iterator[Later]:
    ahead = Later(0.0)
    previous = clock.use(ahead)
    yield ahead
    clock.use(previous)


# the URL


def test_url_options_are_read_and_checked() -> None:
    store = NATSStore(
        "nats://u:s3cret@h:4333?prefix=app&replicas=3&publish_timeout=2&connect_timeout=1"
        "&ack_wait=5&store=memory://"  # the transport's options are accepted as they are
    )
    assert (store.prefix, store.replicas, store.timeout, store.connect_timeout) == (
        "app",
        3,
        2.0,
        1.0,
    )
    assert "s3cret" not in repr(store)
    assert NATSStore("nats://h").prefix == "nerve"
    with pytest.raises(ConfigurationError, match=r"unknown nats URL option\(s\) schema"):
        NATSStore("nats://h?schema=x")
    with pytest.raises(ConfigurationError, match=r"prefix='a\.b'"):
        NATSStore("nats://h?prefix=a.b")
    with pytest.raises(ConfigurationError, match="replicas must be >= 1"):
        NATSStore("nats://h?replicas=0")
    made = store_from_url(
        "nats://h?prefix=p", Settings(idempotency_window=60, history_retention=600)
    )
    assert isinstance(made, NATSStore)
    assert (made.window, made.history_retention) == (60.0, 600.0)


def test_the_nats_store_without_nats_py_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [m for m in sys.modules if m.startswith(("nats", "nerve.stores.nats"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NotInstalled("nats"), *sys.meta_path])
    with pytest.raises(
        MissingDependency, match=r"^the nats:// store needs nats: pip install 'nerve\[nats\]'$"
    ):
        store_from_url("nats://127.0.0.1:4222")


def test_names_become_key_tokens_and_back() -> None:
    for name in ["", "a", "a.b", "*", ">", "x y", "é\u00e9", "m.<locals>.f", "_kv", "-="]:
        found = token(name)
        assert found
        assert all(c.isalnum() or c in "-_=" for c in found)
        assert untoken(found) == name


async def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    [port] = free_ports(1)  # nothing listens there
    store = NATSStore(f"nats://user:s3cret@127.0.0.1:{port}?connect_timeout=0.5")
    with pytest.raises(
        StoreError, match=f"cannot reach the NATS store at 127.0.0.1:{port}"
    ) as info:
        await store.open()
    assert "s3cret" not in str(info.value)


async def test_a_store_not_open_says_so(url: str) -> None:
    store = NATSStore(url)
    with pytest.raises(StoreError, match="is not open"):
        await store.is_done("s", "e")
    await store.open()
    await store.open()  # open twice: still one connection
    await store.mark_done("s", "e")
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="is not open"):
        await store.mark_done("s", "e")
    await store.open()  # and again
    assert await store.is_done("s", "e")
    await store.close()


async def test_more_replicas_than_servers_is_a_store_error(url: str) -> None:
    store = NATSStore(f"{url}&replicas=3")
    with pytest.raises(StoreError, match="creating its buckets and streams failed"):
        await store.open()


# on the server


async def test_buckets_and_streams_take_the_window_retention_and_replicas(url: str) -> None:
    store = NATSStore(url, window=3600.0, history_retention=7200.0)
    await store.open()
    await store.close()
    layout = Layout(store.prefix)
    client = await nats.connect("nats://127.0.0.1:4222")
    try:
        js = client.jetstream()
        configs = {s: (await js.stream_info(s)).config for s in layout.streams()}
        for bucket in layout.buckets:
            config = configs[bucket.stream]
            assert (config.max_msgs_per_subject, config.num_replicas) == (1, 1)
            assert config.allow_direct  # one replica: direct gets read what was written
            assert config.subjects == [f"$KV.{bucket.name}.>"]
        assert configs[layout.done.stream].max_age == 3600.0
        assert configs[layout.steps.stream].max_age == 3600.0
        for kept_for_good in (layout.dead, layout.kept, layout.subscriptions):
            assert not configs[kept_for_good.stream].max_age
        assert configs[layout.log].max_age == configs[layout.log_index].max_age == 7200.0
        # Opened again with another window: the last store opened sets the max age.
        again = NATSStore(url, window=0.0, history_retention=60.0)
        await again.open()
        await again.close()
        assert (await js.stream_info(layout.done.stream)).config.max_age == MIN_AGE
        assert (await js.stream_info(layout.log)).config.max_age == 60.0
    finally:
        await client.close()


async def test_names_with_any_character_work_everywhere(store: NATSStore) -> None:
    sub, other = "billing.v2 *>", "m.<locals>.f"
    event = Event(event_type="a.b", event_id="id.with*dots>and spaces")
    await store.record_published(event)
    assert await store.event_type(event.event_id) == "a.b"
    await store.mark_done_many({sub: [event.event_id]})
    assert await store.done_among(sub, [event.event_id, "id"]) == {event.event_id}
    assert await store.done_among("billing", [event.event_id]) == set()
    await store.add_failure(other, event.event_id, error(1))
    await store.add_dead_letter(DeadLetter(event=event, subscription="", attempts=1, errors=[]))
    assert await store.states(event.event_id) == {
        other: DeliveryState.FAILED,
        "": DeliveryState.DEAD_LETTERED,
        sub: DeliveryState.DONE,
    }
    assert [d.subscription for d in await store.dead_letters(subscription="")] == [""]
    assert await store.dead_letters(subscription="billing") == []
    await store.record_step(sub, event.event_id, "step.one", '"x"')
    assert await store.step_result(sub, event.event_id, "step.one") == '"x"'
    assert await store.add_to(sub, event.event_id, "a.b", {"c.d": 1}) == {"c.d": 1.0}
    await store.declare_subscriptions({sub: "a.#", other: "b.*"})
    assert await store.subscriptions() == {sub: "a.#", other: "b.*"}


async def test_a_done_mark_older_than_the_window_is_ignored(url: str, later: Later) -> None:
    store = NATSStore(url, window=60.0)
    await store.open()
    try:
        await store.mark_done("s", "e")
        await store.record_step("s", "e", "one", "1")
        later.ahead = 61.0  # the server keeps them a while yet: the times in them decide
        assert not await store.is_done("s", "e")
        assert await store.states("e") == {}
        assert await store.step_result("s", "e", "one") is None
    finally:
        await store.close()


async def test_failures_after_a_done_mark_start_a_new_list(store: NATSStore) -> None:
    await store.add_failure("s", "e", error(1, "before"))
    await store.mark_done("s", "e")  # forgets them without a write of its own
    assert await store.take_failures("s", "e") == []
    await store.add_failure("s", "e", error(1, "old"))
    await store.mark_done("s", "e")
    await store.add_failure("s", "e", error(2, "after"))  # a replay that failed
    assert await store.states("e") == {"s": DeliveryState.DONE}  # done still wins
    assert [e.message for e in await store.take_failures("s", "e")] == ["after"]


# races, settled on the server


async def test_of_two_stores_taking_a_dead_letter_one_gets_it(store: NATSStore, url: str) -> None:
    other = NATSStore(url)
    await other.open()
    try:
        events = [Event(event_type="a") for _ in range(20)]
        for event in events:
            await store.add_dead_letter(
                DeadLetter(event=event, subscription="s", attempts=1, errors=[])
            )
        takes = [s.take_dead_letters(event_id=e.event_id) for e in events for s in (store, other)]
        taken = [d.event.event_id for found in await asyncio.gather(*takes) for d in found]
        assert sorted(taken) == sorted(e.event_id for e in events)  # each once
        assert await store.dead_letters() == []
    finally:
        await other.close()


async def test_concurrent_failures_are_all_kept(store: NATSStore, url: str) -> None:
    other = NATSStore(url)
    await other.open()
    try:
        adds = [s.add_failure("s", "e", error(n)) for n in range(10) for s in (store, other)]
        await asyncio.gather(*adds)
        assert len(await other.take_failures("s", "e")) == 20
    finally:
        await other.close()


# the event log


async def test_a_chain_whose_correlation_id_is_no_event_id(store: NATSStore) -> None:
    first = Event(event_type="a", correlation_id="request-42")
    second = Event(event_type="b", correlation_id="request-42", causation_id=first.event_id)
    await store.record_history([(first, 100.0)], [])
    await store.record_history([(second, 101.0), (first, 102.0)], [])  # first again: once
    chain = await store.history_chain("request-42")
    assert [r.event.event_id for r in chain] == [first.event_id, second.event_id]
    assert chain[0].published_at.timestamp() == 100.0


async def test_outcomes_come_back_in_order_for_a_page_of_events(store: NATSStore) -> None:
    events = [Event(event_type=f"e{n}") for n in range(30)]
    await store.record_history([(e, 100.0) for e in events], [])
    rows = [
        (f"s{k}", e.event_id, k + 1, "retrying", 100.0 + k, 0.0, "E", str(k))
        for k in range(3)
        for e in events
    ]
    await store.record_history([], rows)
    records, _ = await store.history_after(None, 30)
    assert [r.event.event_id for r in records] == [e.event_id for e in events]
    for record in records:
        assert [(o.subscription, o.attempt) for o in record.outcomes] == [
            ("s0", 1),
            ("s1", 2),
            ("s2", 3),
        ]


async def test_trimming_walks_past_a_page_of_old_events(store: NATSStore) -> None:
    old = [Event(event_type="old") for _ in range(70)]  # more than one page of 64
    new = Event(event_type="new")
    outcome = ("s", new.event_id, 1, "done", 300.0, 0.0, None, None)
    await store.record_history([*((e, 100.0) for e in old), (new, 300.0)], [outcome])
    await store.trim_history(200.0)
    records, _ = await store.history_after(None, 100)
    assert [r.event.event_type for r in records] == ["new"]
    assert records[0].final_states() == {"s": "done"}  # its outcome was not trimmed
    await store.trim_history(200.0)  # nothing more to trim
    assert len((await store.history_after(None, 100))[0]) == 1


async def test_a_type_lookback_searches_a_long_index(store: NATSStore) -> None:
    wanted = [Event(event_type="wanted", payload={"n": n}) for n in range(120)]
    noise = [Event(event_type="noise") for _ in range(240)]
    rows = [(e, 1000.0 + n) for n, e in enumerate(wanted)]
    rows += [(e, 1000.0 + n / 2) for n, e in enumerate(noise)]
    rows.sort(key=lambda row: row[1])  # logged in publish order, types interleaved
    for start in range(0, len(rows), 50):
        await store.record_history(rows[start : start + 50], [])
    found = await store.history_of_type("wanted", 1090.0, 100)
    assert [r.event.payload for r in found] == [{"n": n} for n in range(90, 120)]
    assert len(await store.history_of_type("wanted", 0.0, 7)) == 7
    assert await store.history_of_type("wanted", 2000.0, 10) == []


# timers and waits


def timer(timer_id: str, due: float) -> Timer:
    return Timer(timer_id=timer_id, due=due, body="{}")


async def test_timers_due_before_the_floor_or_far_behind_are_claimed(store: NATSStore) -> None:
    now = time.time()
    assert await store.add_timer(timer("soon", now + 600))
    assert await store.claim_timers(now, lease=30, limit=10) == []  # sets the floor
    layout = Layout(store.prefix)
    floor = await store._opened().wire.last(
        [(layout.timers.stream, layout.timers.subject("floor"))]
    )
    assert floor[0] is not None
    assert int(floor[0].data) == minute(now) - 2
    assert await store.add_timer(timer("late", now - 7200))  # below the floor: lowers it
    claimed = await store.claim_timers(now, lease=30, limit=10)
    assert [t.timer_id for t in claimed] == ["late"]
    # hours later (a claimer down meanwhile): one listing of every entry catches up
    claimed = await store.claim_timers(now + 3 * 3600, lease=30, limit=10)
    assert [t.timer_id for t in claimed] == ["late", "soon"]  # late: leased to now + 30


async def test_moved_and_deleted_timers_leave_no_claimable_entry(store: NATSStore) -> None:
    now = time.time()
    await store.add_timer(timer("moved", now - 5))
    await store.add_timer(timer("moved", now + 3600), replace=True)  # its old entry: stale
    await store.add_timer(timer("gone", now - 5))
    assert await store.delete_timer("gone")
    await store.add_timer(timer("due", now - 1))
    assert [t.timer_id for t in await store.claim_timers(now, 30, 10)] == ["due"]
    layout = Layout(store.prefix)
    entries = await store._opened().wire.subjects(
        layout.timers.stream, layout.timers.subject("d", ">")
    )
    minutes = sorted(int(layout.timers.tokens(s)[1]) for s in entries)
    assert minutes == [minute(now + 30), minute(now + 3600)]  # stale ones purged


def waiting(wait_id: str, run: str = "run") -> WaitRecord:
    return WaitRecord(
        wait_id=wait_id,
        subscription="s",
        name="wait:1",
        event=Event(event_type="asked", event_id=run),
        event_type="answered",
        match={"correlation_id": run},
        since=0.0,
    )


async def test_the_last_wait_removed_keeps_steps_and_counters_another_window(
    url: str, later: Later
) -> None:
    store = NATSStore(url, window=60.0)
    await store.open()
    try:
        await store.record_step("s", "run", "draft", '"text"')
        await store.add_wait(waiting("w1"))
        await store.add_wait(waiting("w2"))
        await store.add_to("s", "run", "spend", {"tokens": 5})
        later.ahead = 120.0  # past the window: kept while it waits
        assert await store.remove_wait("w1")
        assert await store.step_result("s", "run", "draft") == '"text"'
        assert await store.remove_wait("w2")  # the last: another window from now
        assert await store.waits(event_id="run") == []
        assert await store.step_result("s", "run", "draft") == '"text"'
        assert await store.add_to("s", "run", "spend", {}) == {"tokens": 5.0}
        later.ahead = 240.0
        assert await store.step_result("s", "run", "draft") is None
    finally:
        await store.close()


async def test_a_dead_letter_taken_while_the_pair_waits_keeps_its_steps(
    url: str, later: Later
) -> None:
    store = NATSStore(url, window=60.0)
    await store.open()
    try:
        await store.add_wait(waiting("w1"))
        await store.record_step("s", "run", "draft", '"text"')
        await store.add_to("s", "run", "spend", {"tokens": 5})
        event = Event(event_type="asked", event_id="run")
        await store.add_dead_letter(
            DeadLetter(event=event, subscription="s", attempts=1, errors=[])
        )
        assert len(await store.take_dead_letters(event_id="run")) == 1
        later.ahead = 120.0
        assert await store.step_result("s", "run", "draft") == '"text"'  # still waiting
        assert await store.add_to("s", "run", "spend", {}) == {}  # a replay counts afresh
        assert [
            w.wait_id
            for w, _e in await store.waits_for([Event(event_type="answered", correlation_id="run")])
        ] == ["w1"]
    finally:
        await store.close()


# a broker restart


class PrivateServer:
    """A nats-server of one test's own on a free port (the shared one is never killed),
    started with ``-js`` or without; :meth:`kill` kills every one started."""

    def __init__(self, folder: Path) -> None:
        [self.port] = free_ports(1)
        self.folder = folder
        self.log = folder / "nats.log"
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *, jetstream: bool = True) -> subprocess.Popen[bytes]:
        """Start it (again: on the same store directory) and wait until it answers."""
        args = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)]
        if jetstream:
            args += ["-js", "-sd", str(self.folder / "jetstream")]
        with self.log.open("ab") as log:  # the child keeps its own copy
            server = subprocess.Popen(  # noqa: S603  # the packaged nats-server, our own arguments
                args, stdout=subprocess.DEVNULL, stderr=log
            )
        self.started.append(server)
        port = self.port
        wait_up(server, lambda: answers(port, b"", b"INFO"), "nats-server", self.log, timeout=20)
        return server

    def kill(self) -> None:
        for server in self.started:
            if server.poll() is None:
                server.send_signal(signal.SIGKILL)
            server.wait(timeout=10)


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[PrivateServer]:
    found = PrivateServer(tmp_path)
    yield found
    found.kill()


async def until(call: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """``call()``, again while the store fails (the server recovering its streams)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                return await call()
            except StoreError:
                await asyncio.sleep(0.1)


@pytest.mark.timeout(120)
async def test_everything_survives_a_broker_restart(private_server: PrivateServer) -> None:
    """nats-server is SIGKILLed and started again on its store directory: what the store
    wrote is there, read by the same store, which reconnected on its own."""
    server = private_server.start()
    store = NATSStore(f"nats://127.0.0.1:{private_server.port}?prefix=restart&publish_timeout=2")
    await store.open()
    try:
        event = Event(event_type="a.b")
        await store.mark_done("s", event.event_id)
        await store.add_dead_letter(
            DeadLetter(event=event, subscription="t", attempts=2, errors=[])
        )
        await store.record_step("t", event.event_id, "one", "1")
        await store.add_to("t", event.event_id, "spend", {"tokens": 5})
        await store.record_history(
            [(event, 100.0)], [("s", event.event_id, 1, "done", 100.5, 0.1, None, None)]
        )
        await store.declare_subscriptions({"s": "a.*"})
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        with pytest.raises(StoreError):
            await store.is_done("s", event.event_id)  # while it is down
        private_server.start()  # the same store directory: JetStream recovers from it
        assert await until(lambda: store.is_done("s", event.event_id))  # the same store
        assert await store.states(event.event_id) == {
            "s": DeliveryState.DONE,
            "t": DeliveryState.DEAD_LETTERED,
        }
        assert await store.step_result("t", event.event_id, "one") == "1"
        assert await store.add_to("t", event.event_id, "spend", {}) == {"tokens": 5.0}
        record = await store.history_event(event.event_id)
        assert record is not None
        assert record.final_states() == {"s": "done"}
        assert await store.subscriptions() == {"s": "a.*"}
    finally:
        await store.close()


async def test_a_server_without_jetstream_is_named(private_server: PrivateServer) -> None:
    private_server.start(jetstream=False)
    store = NATSStore(f"nats://127.0.0.1:{private_server.port}")
    with pytest.raises(StoreError, match="has no JetStream: start nats-server with -js"):
        await store.open()
