"""Review of issue 14's fast path: holes found in review, each pinned.

* A request requeued after its incarnation ended (``RoutingTable.orphan``) may have
  committed there without its reply ever being read (killed after the commit, or its
  reply still in a lane's socket when the exit was seen). That commit's tid is in no
  reply, so ``RoutingTable.newest`` does not cover it: forwarded with ``newest`` as its
  ``after``, an incarnation that has heard of ``newest`` takes no round trip and may not
  see the first run's reply record yet, and runs the request again (a resend may land on
  another shard, where no conflict on the record stops it). A resend therefore goes
  without an ``after`` frame (the incarnation makes the round trip); a first send keeps it.
* The validation walk reaches into ZEO's client internals (``uvm.record_feed.ZEOFeed``);
  a client of another shape is refused by ``ZEOFeed.usable`` and walked through the
  storage feed (ZODB's prefetch and MVCC load) over the same ZEO server, to the same
  count and digest.
* The reply record's shard follows the request's target (``crc32(target) % lanes``, the
  lane the supervisor routes it to), not the socket that carried it: a request run on
  main (its lane not yet attached, or refusing the send) and resent later to its lane
  (after a kill) meets its first record in the same shard, where both runs insert the
  same key and conflict, the last line of defence when the resend's snapshot is older
  than the first run's commit (a killed process's last bytes still being read by ZEO).
"""

from __future__ import annotations

import typing
from typing import Any

import pytest

import uvm.record_feed as record_feed
from lexicon.frames import REPLY, REQUEST
from tests.integration.test_lanes import (  # noqa: F401 - fixtures
    Backend,
    Incarnation,
    answer,
    backend,
    image,
    incarnation,
    ready,
    request,
)
from tests.integration.zeo_fixtures import zeo_address_fixture  # noqa: F401
from tests.unit.test_routing_lanes import (  # noqa: F401 - the lanes fixture
    Lanes,
    lanes_fixture,
    ok,
    send,
    target_on,
    tid,
)
from uvm import Kernel, bootstrap, open_db
from uvm.replies import ReplyStore
from uvm.validation import validate_image


def requests_for(parts: Lanes, rid: str) -> list[tuple[str, list[bytes]]]:
    return [(ident, frames) for ident, frames in parts.sent_to()
            if frames[0] == REQUEST and rid.encode() in frames[1]]


def test_a_request_requeued_after_its_incarnation_ended_is_resent_without_after(
        lanes: Lanes) -> None:
    first = lanes.ready("inc-1", 2)
    lanes.attach("inc-1", 0)
    lanes.attach("inc-1", 1)
    send(lanes, "r0", target_on(0, 2))
    lanes.from_("inc-1#0", [REPLY, b"r0", ok("r0"), tid(7)])
    assert lanes.routing.newest == tid(7)
    send(lanes, "r1", target_on(1, 2))  # runs (and may commit) on inc-1, never answered
    [(_, sent)] = requests_for(lanes, "r1")
    assert sent[2:] == [tid(7)]  # a first send carries the newest tid
    first.proc.returncode = -9
    lanes.pool.on_exit(first, now=2.0)  # killed: r1 requeued
    assert "r1" in lanes.routing.pending
    second = lanes.ready("inc-2", 2)
    lanes.attach("inc-2", 0)
    lanes.attach("inc-2", 1)
    lanes.pool.send_quarantines()
    lanes.sockets.forward_all(lanes.routing.release_pending(3.0))
    resent = requests_for(lanes, "r1")[1:]
    assert resent, "r1 was not resent to inc-2"
    for ident, frames in resent:
        assert ident.startswith("inc-2")
        assert frames == [REQUEST, frames[1]], "a resend must make the incarnation catch up"
    assert lanes.routing.inflight["r1"].incarnation == second.id
    send(lanes, "r2", "fresh")  # a first send still carries newest
    [(_, fresh)] = requests_for(lanes, "r2")
    assert fresh[2:] == [tid(7)]


# --- the validation walk's fallback feed over ZEO ------------------------------------------


@pytest.fixture
def zdb(zeo_address: str) -> typing.Iterator[Any]:
    db = open_db(zeo=zeo_address, server_sync=False)
    try:
        bootstrap(db)
        kernel = Kernel(db)
        for i in range(20):
            kernel.send("genesis", "setSlot:value:", [f"s{i}", list(range(i))])
        yield db
    finally:
        db.close()


def test_a_zeo_client_of_another_shape_is_walked_through_the_storage_feed(
        zdb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    through_zeo = validate_image(zdb)
    assert through_zeo["ok"], through_zeo["failures"]
    assert through_zeo["feed"] == "zeo"
    # a ZEO whose internals moved (usable() checks the shape, not the version)
    monkeypatch.setattr(record_feed.ZEOFeed, "usable", staticmethod(lambda storage: False))
    fallback = validate_image(zdb)
    assert fallback["ok"], fallback["failures"]
    assert fallback["feed"] == "storage"
    assert (fallback["objects"], fallback["digest"]) == (through_zeo["objects"],
                                                         through_zeo["digest"])


# --- the record's shard follows the target ---------------------------------------------------


def shards_holding(kernel: Kernel, rid: str) -> list[str]:
    def look(cycle: Any) -> list[str]:
        store = ReplyStore(cycle.connection.root())
        return [name for name, tree in store._trees() if name is not None and rid in tree]

    return kernel.read(look)


def test_a_write_on_main_records_in_its_targets_shard(
        ready: Incarnation, backend: Backend, image: Kernel) -> None:  # noqa: F811 - fixtures
    # genesis: crc32 % 2 == 0, the lane the supervisor routes it to
    rid, payload = request("setSlot:value:", ["viaMain", 1])
    backend.send(ready.ident, REQUEST, payload)
    who, frames = backend.reply(rid)
    assert (who, answer(frames)["ok"]) == (ready.ident, True), answer(frames)
    assert shards_holding(image, rid) == ["0"]
    # resent to its lane: answered from the record, not run again
    backend.send(ready.lane(0), REQUEST, payload)
    _who, frames = backend.reply(rid)
    assert answer(frames)["ok"] is True
    assert shards_holding(image, rid) == ["0"]
