"""The resolved-slot cache never answers with a holder the chain no longer leads to.

Each scenario builds the chain ``D -> C -> B -> A`` (``A`` holds ``x``; ``E`` holds
``x`` too, off the chain), asks ``D`` for ``x`` until the answer is cached, changes the
chain's shape (a shadowing slot on an intermediate ancestor, a slot removed, a parent
changed, single or a list, in place or replaced, a cycle made, ``_slots`` replaced) and
asks again:

* in the same connection (then the change is aborted, or rolled back to a savepoint,
  and the old answer must come back), and on objects never added to a connection;
* in another connection, which commits: the first connection's next transaction must
  see it. Over a MappingStorage and a FileStorage (two connections of one database)
  and a real ZEO server (runzeo: two connections of one client, and two clients).

``test_the_checks_see_a_stale_answer_without_invalidation`` shows the checks can fail:
with the cache's invalidation switched off the same steps give the stale answer.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import transaction
from hypothesis import example, given, settings
from hypothesis import strategies as st
from persistent.list import PersistentList
from transaction.interfaces import NoTransaction
from ZODB import DB
from ZODB.MappingStorage import MappingStorage

from tests.integration.zeo_fixtures import kill_and_reap, start_runzeo
from tests.unit.test_obj import reference_lookup
from uvm import obj as obj_module
from uvm import open_db, slot_cache
from uvm.errors import DoesNotUnderstand
from uvm.obj import UvmObject, find_slot
from uvm.selectors import PARENT_SLOT

NAMES = "ABCDE"
DNU = "does not understand"


def build() -> dict[str, UvmObject]:
    a = UvmObject({"x": "a"})
    b = UvmObject({PARENT_SLOT: a})
    c = UvmObject({PARENT_SLOT: b})
    d = UvmObject({PARENT_SLOT: c})
    return {"A": a, "B": b, "C": c, "D": d, "E": UvmObject({"x": "e"})}


def answer(o: dict[str, UvmObject], name: str = "x") -> str:
    """``D``'s answer for ``name``, read both ways (they must agree)."""
    try:
        holder, value = find_slot(o["D"], name)
    except DoesNotUnderstand:
        with pytest.raises(DoesNotUnderstand):
            getattr(o["D"], name)
        return DNU
    assert getattr(o["D"], name) == value
    assert holder._slots[name] == value
    return value


def cached(o: dict[str, UvmObject], name: str = "x") -> bool:
    return name in o["D"].__dict__.get(slot_cache.ENTRIES, {})


def parents(o: dict[str, UvmObject], name: str) -> Any:
    return o[name]._slots[PARENT_SLOT]


def _delete(o: dict[str, UvmObject], name: str, slot: str) -> None:
    delattr(o[name], slot)


def _older_list(o: dict[str, UvmObject]) -> None:
    o["C"]._slots[PARENT_SLOT] = PersistentList([o["B"]])  # an older image's list of parents
    o["C"]._p_changed = True


def _in_place(o: dict[str, UvmObject]) -> None:
    o["C"]._slots["x"] = "raw"  # below write_slot, as persistence allows: then _p_changed
    o["C"]._p_changed = True


#: name -> (setup, change, answer before, answer after); setup and change take the objects
Change = Callable[[dict[str, Any]], Any]
SCENARIOS: dict[str, tuple[Change | None, Change, str, str]] = {
    "shadow on an intermediate ancestor": (None, lambda o: setattr(o["B"], "x", "b"), "a", "b"),
    "shadow on the receiver's parent": (None, lambda o: setattr(o["C"], "x", "c"), "a", "c"),
    "new value in the holder": (None, lambda o: setattr(o["A"], "x", "a2"), "a", "a2"),
    "slot removed from the holder": (lambda o: setattr(o["B"], "x", "b"),
                                     lambda o: _delete(o, "B", "x"), "b", "a"),
    "last slot removed": (None, lambda o: _delete(o, "A", "x"), "a", DNU),
    "receiver gains the slot": (None, lambda o: setattr(o["D"], "x", "d"), "a", "d"),
    "receiver's parent changed": (None, lambda o: setattr(o["D"], PARENT_SLOT, o["E"]), "a", "e"),
    "receiver's parent removed": (None, lambda o: _delete(o, "D", PARENT_SLOT), "a", DNU),
    "ancestor's parent removed": (None, lambda o: _delete(o, "B", PARENT_SLOT), "a", DNU),
    "single parent changed": (None, lambda o: setattr(o["C"], PARENT_SLOT, o["E"]), "a", "e"),
    "single parent becomes a list": (None, lambda o: setattr(o["C"], PARENT_SLOT, [o["E"], o["B"]]),
                                     "a", "e"),
    "list of parents becomes single": (lambda o: setattr(o["C"], PARENT_SLOT, [o["E"], o["B"]]),
                                       lambda o: setattr(o["C"], PARENT_SLOT, o["B"]), "e", "a"),
    "list of parents gains one in place": (lambda o: setattr(o["C"], PARENT_SLOT, [o["B"]]),
                                           lambda o: parents(o, "C").insert(0, o["E"]), "a", "e"),
    "list of parents loses one in place": (lambda o: setattr(o["C"], PARENT_SLOT, [o["E"], o["B"]]),
                                           lambda o: parents(o, "C").remove(o["E"]), "e", "a"),
    "list parent shadowed behind a list": (lambda o: setattr(o["C"], PARENT_SLOT, [o["B"], o["E"]]),
                                           lambda o: setattr(o["B"], "x", "b"), "a", "b"),
    "cycle made that cuts the holder off": (None, lambda o: setattr(o["B"], PARENT_SLOT, o["D"]),
                                            "a", DNU),
    "shadow inside a cycle": (lambda o: setattr(o["A"], PARENT_SLOT, o["D"]),
                              lambda o: setattr(o["B"], "x", "b"), "a", "b"),
    "slot removed inside a cycle": (lambda o: (setattr(o["A"], PARENT_SLOT, o["D"]),
                                               setattr(o["B"], "x", "b")),
                                    lambda o: _delete(o, "B", "x"), "b", "a"),
    "_slots replaced (become:)": (None, lambda o: setattr(o["C"], "_slots", {"x": "swapped",
                                                                             PARENT_SLOT: o["B"]}),
                                  "a", "swapped"),
    "_slots changed in place, then _p_changed": (None, _in_place, "a", "raw"),
    "receiver's _slots replaced": (None, lambda o: setattr(o["D"], "_slots", {PARENT_SLOT: o["E"]}),
                                   "a", "e"),
    "older PersistentList of parents changed in place": (
        _older_list, lambda o: parents(o, "C").insert(0, o["E"]), "a", "e"),
}


#: answers never cached: a list of parents whose in-place changes the cache cannot see
UNCACHED = {"older PersistentList of parents changed in place"}


def warm(o: dict[str, UvmObject], expected: str, what: str) -> None:
    """Ask twice: the second answer comes from the cache (where there is one to cache)."""
    assert answer(o) == expected, what
    assert answer(o) == expected, what
    if expected != DNU and what not in UNCACHED:
        assert cached(o), f"{what}: the answer was not cached, so this checks nothing"
    elif what in UNCACHED:
        assert not cached(o), f"{what}: cached, though its changes are not seen"
    with pytest.raises(DoesNotUnderstand):  # a missing slot ends, cycles or not
        find_slot(o["D"], "nowhere")


# -- one connection ------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_change_on_objects_in_no_connection_is_seen_at_once(scenario: str) -> None:
    setup, change, before, after = SCENARIOS[scenario]
    o = build()
    if setup:
        setup(o)
    warm(o, before, scenario)
    change(o)
    assert answer(o) == after, scenario
    assert answer(o) == after, scenario


def _apply(objs: list[UvmObject], op: tuple[str, int, list[int]]) -> None:
    kind, i, targets = op
    o = objs[i]
    current = o._slots.get(PARENT_SLOT)
    if kind == "set":
        o.x = i
    elif kind == "del" and "x" in o._slots:
        del o.x
    elif kind == "parents":
        if not targets:
            if current is not None:
                delattr(o, PARENT_SLOT)
        else:
            setattr(o, PARENT_SLOT, objs[targets[0]] if len(targets) == 1 else
                    [objs[t] for t in targets])
    elif kind == "insert" and isinstance(current, list | PersistentList) and targets:
        current.insert(0, objs[targets[0]])
    elif kind == "pop" and isinstance(current, list | PersistentList) and len(current):
        current.pop(0)


histories = st.integers(min_value=2, max_value=7).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.tuples(st.sampled_from(["set", "del", "parents", "insert", "pop"]),
                       st.integers(0, n - 1), st.lists(st.integers(0, n - 1), max_size=3)),
             max_size=40),
))


@settings(max_examples=300, deadline=None)
@given(histories)
@example((3, [("set", 0, []), ("parents", 1, [0]), ("parents", 2, [1]), ("parents", 1, [])]))
@example((3, [("set", 0, []), ("parents", 1, [2, 0]), ("parents", 2, [1]), ("pop", 1, [])]))
def test_lookups_match_the_rule_after_every_change(history: tuple[int, list[Any]]) -> None:
    """Random graphs changed step by step (slots, single and list parents, lists in place,
    cycles as they come): after each step every object answers what the rule says."""
    n, ops = history
    objs = [UvmObject() for _ in range(n)]
    for op in ops:
        _apply(objs, op)
        for start in range(n):
            expected = reference_lookup(objs, start, "x")
            if expected is None:
                with pytest.raises(DoesNotUnderstand):
                    find_slot(objs[start], "x")
            else:
                assert find_slot(objs[start], "x")[0] is objs[expected]
                assert find_slot(objs[start], "x")[0] is objs[expected]  # cached by now


class Session:
    """A connection with its own explicit transaction manager, a transaction always open."""

    def __init__(self, db: Any, prefix: str) -> None:
        self.prefix = prefix
        self.tm = transaction.TransactionManager(explicit=True)
        self.tm.begin()
        self.conn = db.open(transaction_manager=self.tm)

    def objects(self) -> dict[str, Any]:
        root = self.conn.root()
        return {n: root[self.prefix + n] for n in NAMES}

    def store(self, o: dict[str, UvmObject]) -> None:
        root = self.conn.root()
        for n, v in o.items():
            root[self.prefix + n] = v
        self.commit()

    def commit(self) -> None:
        self.tm.commit()
        self.tm.begin()

    def abort(self) -> None:
        self.tm.abort()
        self.tm.begin()

    def close(self) -> None:
        with contextlib.suppress(NoTransaction):
            self.tm.abort()
        self.conn.close()


@pytest.fixture(scope="module")
def zeo_server() -> Iterator[str]:
    """One real ZEO server (runzeo) for this module's tests, on a Unix socket."""
    folder = Path(tempfile.mkdtemp(prefix="batos-sc-"))  # short: socket paths max ~107 bytes
    server = start_runzeo(folder / "zeo.sock", folder / "zeo.fs", folder / "zeo.log")
    try:
        yield str(folder / "zeo.sock")
    finally:
        kill_and_reap(server, grace=10.0)
        shutil.rmtree(folder, ignore_errors=True)


STORAGES = ["mapping", "file", "zeo", "zeo-two-clients"]


@pytest.fixture(params=STORAGES)
def two_sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Session, Session]]:
    """Two connections (each its own transaction manager): of one database, or, for
    ``zeo-two-clients``, of two databases over the same ZEO server."""
    kind = request.param
    if kind == "mapping":
        dbs = [DB(MappingStorage())]
    elif kind == "file":
        dbs = [open_db(tmp_path / "image.fs")]
    else:
        address = request.getfixturevalue("zeo_server")
        dbs = [open_db(zeo=address) for _ in range(2 if kind == "zeo-two-clients" else 1)]
    prefix = f"sc-{uuid.uuid4().hex[:8]}-"
    sessions = (Session(dbs[0], prefix), Session(dbs[-1], prefix))
    try:
        yield sessions
    finally:
        for session in sessions:
            session.close()
        for db in dbs:
            db.close()


@pytest.fixture
def one_session(tmp_path: Path) -> Iterator[Session]:
    db = open_db(tmp_path / "image.fs")
    session = Session(db, "sc-")
    try:
        yield session
    finally:
        session.close()
        db.close()


def stored(session: Session, setup: Callable[[dict[str, Any]], Any] | None) -> dict[str, Any]:
    o = build()
    session.store(o)
    if setup:
        setup(session.objects())
        session.commit()
    return session.objects()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_change_in_this_connection_is_seen_at_once_and_its_abort_restores(
    one_session: Session, scenario: str
) -> None:
    setup, change, before, after = SCENARIOS[scenario]
    o = stored(one_session, setup)
    warm(o, before, scenario)
    change(o)
    assert answer(o) == after, scenario
    assert answer(o) == after, scenario
    one_session.abort()
    assert answer(o) == before, f"{scenario}: aborted, the old answer comes back"
    warm(o, before, scenario)
    change(o)
    one_session.commit()
    assert answer(o) == after, f"{scenario}: committed"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_savepoint_rolled_back_restores_the_old_answer(one_session: Session, scenario: str) -> None:
    setup, change, before, after = SCENARIOS[scenario]
    o = stored(one_session, setup)
    warm(o, before, scenario)
    point = one_session.tm.savepoint()
    change(o)
    assert answer(o) == after, scenario
    point.rollback()
    assert answer(o) == before, f"{scenario}: rolled back, the old answer comes back"


# -- another connection --------------------------------------------------------------------


def check_other_connection(two: tuple[Session, Session], scenario: str) -> tuple[str, str]:
    """The answer in the first connection before and after the second one commits."""
    first, second = two
    setup, change, _before, _after = SCENARIOS[scenario]
    o = stored(first, setup)
    first.abort()  # a new transaction, as a kernel's next message
    before = answer(o)
    warm(o, before, scenario)
    second.abort()  # sees the first connection's commits
    change(second.objects())
    second.commit()
    assert answer(o) == before, "the snapshot stays until the transaction ends"
    first.abort()
    return before, answer(o)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_change_committed_by_another_connection_is_seen_by_the_next_transaction(
    two_sessions: tuple[Session, Session], scenario: str
) -> None:
    _setup, _change, before, after = SCENARIOS[scenario]
    assert check_other_connection(two_sessions, scenario) == (before, after), scenario


def test_the_checks_see_a_stale_answer_without_invalidation(
    two_sessions: tuple[Session, Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenarios above can fail: with ``changed``/``touched`` switched off, the
    cached holder outlives the change, in this connection and from another one."""
    monkeypatch.setattr(obj_module, "changed", lambda obj: None)
    monkeypatch.setattr(obj_module, "touched", lambda obj: None)
    o = build()
    warm(o, "a", "no connection")
    o["C"].x = "c"
    assert answer(o) == "a", "stale, as a cache without invalidation would answer"
    assert check_other_connection(two_sessions, "shadow on an intermediate ancestor") == ("a", "a")


def test_a_receiver_in_no_connection_sees_another_connections_commit(
    two_sessions: tuple[Session, Session],
) -> None:
    first, second = two_sessions
    o = stored(first, None)
    loose = UvmObject({PARENT_SLOT: o["D"]})  # never added to the connection
    assert find_slot(loose, "x")[1] == "a"
    assert "x" in loose.__dict__[slot_cache.ENTRIES]
    second.abort()
    second.objects()["B"].x = "b"
    second.commit()
    first.abort()
    assert find_slot(loose, "x")[1] == "b"


def test_ancestors_evicted_to_ghosts_still_see_another_connections_commit(
    two_sessions: tuple[Session, Session],
) -> None:
    """Only ``D`` stays loaded (and only ``D`` is in the root): ``C`` and ``B`` are
    evicted to ghosts, so nothing of this connection refers to ``B`` any more (its pickle
    cache holds ghosts weakly); ``B``'s change must still reach the cached answer."""
    first, second = two_sessions
    stored(first, None)
    root = first.conn.root()
    for name in "ABCE":
        del root[first.prefix + name]
    first.commit()
    d = root[first.prefix + "D"]
    assert find_slot(d, "x")[1] == "a"
    assert "x" in d.__dict__[slot_cache.ENTRIES]
    c = d._slots[PARENT_SLOT]
    b = c._slots[PARENT_SLOT]
    oid = b._p_oid
    for ancestor in (b, c):
        ancestor._p_deactivate()
        assert ancestor._p_status == "ghost"
    del b, c, ancestor
    gc.collect()
    second.abort()
    chain = second.conn.root()[second.prefix + "D"]._slots[PARENT_SLOT]._slots[PARENT_SLOT]
    assert chain._p_oid == oid
    chain.x = "b"
    second.commit()
    first.abort()
    assert find_slot(d, "x")[1] == "b"
    assert d.x == "b"


def test_a_ghost_receiver_looks_up_afresh(one_session: Session) -> None:
    o = stored(one_session, None)
    warm(o, "a", "loaded")
    one_session.conn.cacheMinimize()  # every object a ghost: D's entries go with its state
    assert o["D"]._p_status == "ghost"
    assert answer(o) == "a"
    o["B"].x = "b"
    assert answer(o) == "b"


def test_an_answer_found_while_the_cache_was_dropped_is_not_kept() -> None:
    """A search reads the token first; a bump during it (another thread's change of an
    object the cache watches) voids its answer."""
    o = build()
    token = slot_cache.STATE.token
    slot_cache.bump()
    slot_cache.remember(o["D"], "x", o["A"], [o["C"], o["B"], o["A"]], token)
    assert not cached(o)
    slot_cache.remember(o["D"], "x", o["A"], [o["C"], o["B"], o["A"]], slot_cache.STATE.token)
    assert cached(o)


def test_the_cache_keeps_nothing_alive() -> None:
    o = build()
    assert answer(o) == "a"
    assert slot_cache.watched() >= 3
    d = o.pop("D")
    assert cached({"D": d})
    del o, d
    gc.collect()
    assert slot_cache.watched() == 0  # each death bumped: nothing it answered stands


def test_the_cache_keeps_a_bounded_number_of_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slot_cache, "MAX_WATCHED", 10)
    slot_cache.bump()
    chains = [build() for _ in range(10)]
    for o in chains:
        assert answer(o) == "a"
        assert slot_cache.watched() <= 10
    for o in chains:
        assert answer(o) == "a"
