"""Every message runs in its own decimal context and random generator (issue 11).

``uvm.dispatch.run_message`` (live messages and trials) runs a message in a copy of the
caller's contextvars context that starts with a fresh decimal context and random scope
(``uvm.message_scope.enter_message``), whatever its methods import. These tests check that
nothing a message does through the granted ``decimal`` and ``random`` functions, directly
or through a function, ``partial``, lambda or generator another method handed out or an
earlier message left behind, reaches the thread's state or a later message; and that the
granted functions refuse outside any message (code left over, run by the garbage
collector or by whoever kept it) instead of touching the thread's state.

Leftovers reach a later message here through a plain list passed as an argument to
``run_message`` (the seam the kernel passes converted arguments through), standing for
any channel an attacker may find; the garbage collector's channel is tested as it is.
"""

from __future__ import annotations

import asyncio
import decimal
import gc
import random
import sys
import threading

import pytest
import transaction

from uvm import AsyncKernel, DoesNotUnderstand, Kernel, MethodFailed, capabilities, message_scope
from uvm.budget import Limits
from uvm.dispatch import run_message
from uvm.errors import BudgetExceeded
from uvm.registry import Cycle, Registry, using_cycle

LIMITS = Limits(cpu=5, wall=30, grace=2)

# a leftover generator dropped outside its message refuses to end its ``with`` there; the
# interpreter reports that refusal as an unraisable exception (tested below, as it is)
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

METHODS = {
    # the red team's case: a decimal-scoped method hands its functions out
    "giver": "def giver(self):\n    import decimal\n"
             "    return (decimal.getcontext, decimal.setcontext, decimal.Context)\n",
    "taker": "def taker(self):\n    g, s, C = self.giver()\n    s(C(prec=3))\n"
             "    return g().prec\n",
    "third": "def third(self):\n    import decimal\n    return str(decimal.Decimal(1) / 3)\n",
    "prec": "def prec(self):\n    g, s, C = self.giver()\n    return g().prec\n",
    # leftovers: kept in a list the caller passed
    "leak:": (
        "def leak(self, box):\n    import decimal, functools, random\n"
        "    box.append(lambda: decimal.setcontext(decimal.Context(prec=3)))\n"
        "    box.append(functools.partial(random.seed, 1))\n"
        "    def inside():\n        with decimal.localcontext() as c:\n"
        "            c.prec = 5\n            yield c.prec\n"
        "    g = inside()\n    next(g)\n    box.append(g)\n"
        "    box.append(decimal.getcontext)\n"
        "    return 1\n"),
    "runs:": "def runs(self, box):\n    box[0]()\n    return self.prec()\n",
    "seeded:": ("def seeded(self, box):\n    import random\n    box[1]()\n"
                "    return [random.random() for i in range(3)]\n"),
    "fresh": "def fresh(self):\n    import random\n    return [random.random() for i in range(3)]\n",
    "resume:": "def resume(self, box):\n    for x in box[2]:\n        pass\n    return 1\n",
    # a generator method: its own scope is inside the generator
    "gm": "def gm(self):\n    import decimal\n    decimal.getcontext().prec = 6\n    yield 1\n"
          "    yield 2\n",
    "keepgen:": "def keepgen(self, box):\n    g = self.gm()\n    next(g)\n    box.append(g)\n"
                "    return 1\n",
    # per-method scopes within one message
    "outer": ("def outer(self):\n    import decimal\n    decimal.getcontext().prec = 5\n"
              "    inner = self.inner()\n    return decimal.getcontext().prec, inner\n"),
    "inner": "def inner(self):\n    import decimal\n    return decimal.getcontext().prec\n",
    # ... whose finally starts a generator method that outlives the collection (a new
    # cycle), which would leave its scope open in the message the collection lands in
    "cyclicMethod": (
        "def cyclicMethod(self):\n"
        "    def trap(box):\n        try:\n            yield 1\n        finally:\n"
        "            g = self.gm()\n            keep = [g]\n            keep.append(keep)\n"
        "            next(g)\n"
        "    box = []\n    g = trap(box)\n    box.append(g)\n    next(g)\n    return 1\n"),
    # a collection in the middle of a message (``collect`` is gc.collect, passed in)
    "collecting:": ("def collecting(self, collect):\n    import decimal, random\n    collect()\n"
                    "    return decimal.getcontext().prec, random.random()\n"),
    # a leftover whose finally writes into the image (and calls a primitive)
    "stealer": (
        "def stealer(self):\n"
        "    def trap(box):\n        try:\n            yield 1\n        finally:\n"
        "            self.stolen = 'from an earlier message'\n"
        "    box = []\n    g = trap(box)\n    box.append(g)\n    next(g)\n    return 1\n"),
    "definer": (
        "def definer(self):\n"
        "    def trap(box):\n        try:\n            yield 1\n        finally:\n"
        "            define_method(self, 'planted', 'def planted(self):\\n    return 1\\n')\n"
        "    box = []\n    g = trap(box)\n    box.append(g)\n    next(g)\n    return 1\n"),
    # a message the budget stops while it has set the context
    "spin": ("def spin(self):\n    g, s, C = self.giver()\n    s(C(prec=3))\n"
             "    while True:\n        pass\n"),
    # a generator left in a reference cycle: its finally runs where the collector runs
    "cyclic": (
        "def cyclic(self):\n    import decimal, random\n"
        "    def trap(box):\n        try:\n            yield 1\n        finally:\n"
        "            random.seed(1)\n            decimal.setcontext(decimal.Context(prec=3))\n"
        "    box = []\n    g = trap(box)\n    box.append(g)\n    next(g)\n    return 1\n"),
}


def _state(ctx: decimal.Context) -> tuple:
    return (ctx.prec, ctx.rounding, ctx.Emin, ctx.Emax, ctx.capitals, ctx.clamp,
            sorted(str(s) for s, on in ctx.traps.items() if on))


@pytest.fixture
def kernel(db):
    kernel = Kernel(db)
    for selector, source in METHODS.items():
        kernel.send("genesis", "defineMethod:source:", [selector.rstrip(":"), source])
    return kernel


@pytest.fixture
def send(db, kernel):
    """``send(selector, *args)``: one message through ``run_message``, as the crucible's
    trial worker runs it (its own transaction manager, a ``Cycle``, ``using_cycle``)."""
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    conn = db.open(transaction_manager=tm)
    cycle = Cycle(conn, Registry(conn.root()), "crucible")
    with using_cycle(cycle):
        genesis = cycle.registry.resolve("genesis")

    def send(selector, *args, limits=LIMITS):
        with using_cycle(cycle):
            return run_message(genesis, selector, list(args), limits=limits)

    try:
        yield send
    finally:
        tm.abort()
        conn.close()


@pytest.fixture
def thread_context():
    """The test thread's decimal context: the same object, unchanged, after the test."""
    ctx = decimal.getcontext()
    before = _state(ctx)
    yield ctx
    assert decimal.getcontext() is ctx
    assert _state(ctx) == before


# --- the red team's case ---------------------------------------------------------------


def test_a_handed_out_setcontext_changes_the_message_not_the_thread(kernel, thread_context):
    assert kernel.send("genesis", "taker") == 3  # it took effect inside the message
    assert decimal.getcontext() is thread_context
    assert thread_context.prec == 28
    assert kernel.send("genesis", "prec") == 28  # the next message starts afresh
    assert len(kernel.send("genesis", "third")) == 30  # 28 digits and "0."


def test_the_trial_path_is_the_same(send, thread_context):
    assert send("taker") == 3
    assert send("prec") == 28
    assert thread_context.prec == 28


def test_every_worker_thread_of_the_async_front_keeps_its_context(db, kernel):
    seen: dict[int, tuple] = {}

    class Probe(Kernel):  # reads the worker thread's own context after each message
        def send(self, *args, **kwargs):
            try:
                return super().send(*args, **kwargs)
            finally:
                seen[threading.get_ident()] = (id(decimal.getcontext()),
                                               _state(decimal.getcontext()))

    workers = 4
    targets = []  # clones of genesis until every worker has one (the front's own rule)
    while len({hash(str(t)) % workers for t in targets}) < workers:
        targets.append(kernel.send("genesis", "clone")["$ref"])

    async def main():
        async with AsyncKernel(Probe(db), workers=workers) as front:
            first = await asyncio.gather(*(front.send(t, "prec") for t in targets))
            before = dict(seen)
            taken = await asyncio.gather(*(front.send(t, "taker") for t in targets * 3))
            after = await asyncio.gather(*(front.send(t, "prec") for t in targets))
            return first, before, taken, after

    first, before, taken, after = asyncio.run(main())
    assert len(before) == workers
    assert set(first) == set(after) == {28}
    assert set(taken) == {3}
    assert seen == before  # each thread: the same context object, in the same state
    assert all(state[0] == 28 for _ident, state in seen.values())


# --- leftovers in a later message ------------------------------------------------------


def test_leftovers_act_only_on_the_message_that_runs_them(send, thread_context):
    box: list = []
    assert send("leak:", box) == 1
    assert len(box) == 4
    assert send("runs:", box) == 3  # the leaked lambda set the later message's context
    assert send("prec") == 28  # ... and only that message's
    assert thread_context.prec == 28


def test_a_leaked_random_seed_seeds_only_the_message_that_calls_it(send):
    process = random.getstate()
    box: list = []
    send("leak:", box)
    seeded = send("seeded:", box)
    assert seeded == send("seeded:", box)  # the seed held within each message
    assert send("fresh") != seeded  # a later message is not seeded
    assert random.getstate() == process


def test_a_leaked_localcontext_cannot_end_in_another_message(send, thread_context):
    box: list = []
    send("leak:", box)
    with pytest.raises(MethodFailed, match="made in another message"):
        send("resume:", box)
    assert send("prec") == 28


def test_a_leaked_generator_method_cannot_end_its_scope_in_another_message(send):
    box: list = []
    send("keepgen:", box)
    with pytest.raises(MethodFailed, match="another message"):
        send("resume:", [None, None, box[0]])
    assert send("prec") == 28


def test_a_method_that_imports_decimal_runs_in_its_own_context(send):
    assert send("outer") == [5, 28]


# --- outside any message ---------------------------------------------------------------


def test_leftovers_refuse_outside_any_message(send, thread_context):
    process = random.getstate()
    box: list = []
    send("leak:", box)
    set_prec, seed, generator, getcontext = box
    for leftover in (set_prec, seed, getcontext):
        with pytest.raises(RuntimeError, match="only while a message runs"):
            leftover()
    with pytest.raises(RuntimeError, match="only while a message runs"):
        generator.close()  # its localcontext would set the first message's context here
    assert random.getstate() == process


def test_a_generator_methods_scope_refuses_to_end_outside_any_message(send, thread_context):
    box: list = []
    send("keepgen:", box)
    with pytest.raises(RuntimeError, match="only while a message runs"):
        box[0].close()


@pytest.mark.parametrize("leftover", ["cyclic", "cyclicMethod"])
def test_a_generator_closed_by_the_collector_touches_nothing(send, thread_context,
                                                              monkeypatch, leftover):
    process = random.getstate()
    caught: list = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: caught.append(info.exc_value))
    gc.collect()
    assert send(leftover) == 1  # the trap is garbage in a cycle now
    gc.collect()  # here, outside any message: its finally runs on this thread
    assert [type(e) for e in caught] == [RuntimeError]
    assert "only while a message runs" in str(caught[0])
    assert random.getstate() == process


@pytest.mark.parametrize("leftover", ["cyclic", "cyclicMethod"])
def test_a_generator_collected_inside_another_message_cannot_reach_it(send, monkeypatch,
                                                                     leftover):
    caught: list = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: caught.append(info.exc_value))
    gc.collect()
    assert send(leftover) == 1
    prec, drawn = send("collecting:", gc.collect)  # the leftover's finally runs in there
    assert [type(e) for e in caught] == [RuntimeError]
    assert prec == 28  # not the leftover's setcontext
    assert drawn != random.Random(1).random()  # nor its seed


def test_the_grants_are_the_checked_functions():
    grants = capabilities.namespace("decimal")
    assert grants.getcontext is message_scope.getcontext
    assert grants.setcontext is message_scope.setcontext
    assert grants.localcontext is message_scope.localcontext
    with pytest.raises(RuntimeError):
        capabilities.namespace("random").random()


# --- the budget's signal ---------------------------------------------------------------


def test_a_message_stopped_by_the_budget_leaves_the_thread_context(send, thread_context):
    with pytest.raises(BudgetExceeded):
        send("spin", limits=Limits(cpu=0.2, wall=5, grace=1))
    assert send("prec") == 28


@pytest.mark.parametrize("leftover", ["stealer", "definer"])
def test_a_leftover_collected_inside_another_message_cannot_write_into_it(db, send,
                                                                         monkeypatch, leftover):
    """A generator left in a cycle by one message, collected while another runs on the same
    thread, must not write (or define) into that message's transaction."""
    caught: list = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: caught.append(info.exc_value))
    gc.collect()
    assert send(leftover) == 1
    assert send("collecting:", gc.collect)[0] == 28  # the leftover's finally runs in there
    assert caught
    assert all("left over" in str(e) for e in caught), caught
    assert send("respondsTo:", "planted") is False
    with pytest.raises(DoesNotUnderstand):
        send("stolen")


def test_a_collection_whose_stop_callback_was_interrupted_leaves_no_stale_mark():
    """The budget's watchdog may interrupt a long collection with an asynchronous exception
    that lands in a Python gc callback; a pass whose "stop" hook never ran must not leave
    its thread marked as collecting (every later message on it would be refused)."""
    ident = threading.get_ident()

    def start_only(phase, info):  # the hook, as if "stop" had been interrupted
        if phase == "start":
            message_scope._COLLECTOR[0] = (ident, message_scope._GC_SEEN.get("stop"))

    index = gc.callbacks.index(message_scope._collector)
    gc.callbacks[index] = start_only
    try:
        gc.collect()
        assert message_scope._COLLECTOR[0] is not None  # the slot was never cleared ...
        assert not message_scope.collecting()  # ... and still means nothing
    finally:
        gc.callbacks[index] = message_scope._collector
        message_scope._COLLECTOR[0] = None
