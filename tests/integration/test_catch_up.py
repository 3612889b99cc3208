"""Freshness by transaction id over a real ZEO server: ``uvm.image.catch_up`` and
``Kernel.send(after=)`` / ``Kernel.seen()``.

Two clients of one runzeo: ``writer`` (a kernel of its own) and ``reader`` (opened as an
incarnation opens it, ``server_sync=False``). To make "behind" deterministic, the
reader's ZEO I/O thread is held on a gate while the writer commits, so no invalidation
can land: a message told an ``after`` the reader has already heard of takes no round
trip and sees the old snapshot (proof the hold works); one told the writer's tid, or
none, makes the round trip, which waits for the gate, and sees the write. A timer opens
the gate, so nothing here can hang on a wrong answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from ZODB.MappingStorage import MappingStorage

from tests.integration.zeo_fixtures import zeo_address_fixture  # noqa: F401
from uvm import Kernel, bootstrap, open_db
from uvm.image import catch_up, last_tid
from uvm.pickles import ImageDB

HOLD = 0.5  # seconds the reader's I/O thread is held


@pytest.fixture
def writer(zeo_address: str) -> Iterator[Kernel]:
    db = open_db(zeo=zeo_address)
    bootstrap(db)
    try:
        yield Kernel(db)
    finally:
        db.close()


@pytest.fixture
def reader(zeo_address: str, writer: Kernel) -> Iterator[Kernel]:
    db = open_db(zeo=zeo_address, server_sync=False)
    try:
        yield Kernel(db)
    finally:
        db.close()


class Hold:
    """Holds ``db``'s ZEO I/O thread (its event loop) until ``release`` or ``HOLD`` s."""

    def __init__(self, db: Any) -> None:
        self.gate = threading.Event()
        entered = threading.Event()

        def held() -> None:
            entered.set()
            self.gate.wait()

        db.storage._server.loop.call_soon_threadsafe(held)
        assert entered.wait(10), "the ZEO client's I/O loop did not take the hold"
        self.timer = threading.Timer(HOLD, self.gate.set)
        self.timer.start()

    def release(self) -> None:
        self.gate.set()
        self.timer.cancel()


def test_an_after_already_heard_of_takes_no_round_trip_a_newer_one_catches_up(
        writer: Kernel, reader: Kernel) -> None:
    writer.send("genesis", "setSlot:value:", ["fresh", 1])
    assert reader.send("genesis", "fresh") == 1
    known = reader.seen()
    assert known is not None
    hold = Hold(reader.db)
    try:
        writer.send("genesis", "setSlot:value:", ["fresh", 2])
        written = writer.seen()
        assert written is not None
        assert written > known
        assert reader.send("genesis", "fresh", after=known) == 1  # no round trip: stale
        assert reader.seen() == known
        assert reader.send("genesis", "fresh", after=written) == 2  # waited for the gate
        assert reader.seen() >= written
    finally:
        hold.release()


def test_no_after_always_catches_up(writer: Kernel, reader: Kernel) -> None:
    writer.send("genesis", "setSlot:value:", ["fresh", 1])
    assert reader.send("genesis", "fresh") == 1
    hold = Hold(reader.db)
    try:
        writer.send("genesis", "setSlot:value:", ["fresh", 2])
        assert reader.send("genesis", "fresh") == 2
    finally:
        hold.release()


def test_the_kernels_own_reads_and_writes_catch_up(writer: Kernel, reader: Kernel) -> None:
    writer.send("genesis", "setSlot:value:", ["fresh", 1])
    assert reader.send("genesis", "fresh") == 1
    hold = Hold(reader.db)
    try:
        writer.send("genesis", "setSlot:value:", ["fresh", 2])
        assert reader.read(lambda cycle: cycle.registry.resolve("genesis")._slots["fresh"]) == 2
    finally:
        hold.release()


def test_seen_is_the_tid_of_the_threads_last_message(writer: Kernel, reader: Kernel) -> None:
    assert reader.seen() is None
    writer.send("genesis", "setSlot:value:", ["fresh", 1])
    first = writer.seen()
    assert first == last_tid(writer.db)
    assert len(first) == 8
    writer.send("genesis", "setSlot:value:", ["fresh", 2])
    assert writer.seen() > first
    seen_elsewhere: list[Any] = []
    other = threading.Thread(target=lambda: seen_elsewhere.append(writer.seen()))
    other.start()
    other.join()
    assert seen_elsewhere == [None]  # per thread


def test_a_storage_without_ping_is_left_alone() -> None:
    db = ImageDB(MappingStorage())
    try:
        catch_up(db, None)
        catch_up(db, b"\xff" * 8)
        assert last_tid(db) == db.storage.lastTransaction()
    finally:
        db.close()
