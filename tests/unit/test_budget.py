"""Budgets: a message over its CPU, wall-clock or memory budget, or raising what
method code should never raise, is answered cleanly, commits nothing, and the
kernel serves the next message."""

from __future__ import annotations

import threading
import time

import pytest

from uvm import Kernel, MethodFailed
from uvm import methods as uvm_methods
from uvm.budget import MAX_REPLY_BYTES, Limits, OverBudget, scope, watchdog
from uvm.errors import MAX_ERROR_CHARS, BudgetExceeded, ReplyTooLarge

FAST = Limits(cpu=0.15, wall=2.0, grace=1.0)


@pytest.fixture
def budgeted(db):
    return Kernel(db, limits=FAST)


def define(kernel, selector, source):
    kernel.send("genesis", "defineMethod:source:", [selector, source])


def last_tid(db):
    return db.storage.lastTransaction()


def assert_serves(kernel):
    assert kernel.send("genesis", "printString").startswith("<genesis")


HOSTILE = {
    "busy": "def busy(self):\n    self.touched = 1\n    while True:\n        pass\n",
    "swallow": (
        "def swallow(self):\n    self.touched = 1\n    while True:\n        try:\n"
        "            while True:\n                pass\n        except Exception:\n"
        "            pass\n"
    ),
    "finally_loops": (
        "def finally_loops(self):\n    self.touched = 1\n    try:\n        try:\n"
        "            while True:\n                pass\n        finally:\n"
        "            while True:\n                pass\n    finally:\n"
        "        while True:\n            pass\n"
    ),
    "generator": (
        "def generator(self):\n    self.touched = 1\n    def spin():\n        try:\n"
        "            yield 1\n            while True:\n                pass\n        finally:\n"
        "            while True:\n                pass\n    kept = spin()\n"
        "    for x in kept:\n        pass\n"
    ),
    "counting": (
        "def counting(self):\n    self.touched = 1\n    n = 0\n    while True:\n"
        "        n = n + 1\n"
    ),
}


@pytest.mark.parametrize("selector", sorted(HOSTILE))
def test_over_budget_is_answered_and_commits_nothing(budgeted, db, selector):
    define(budgeted, selector, HOSTILE[selector])
    before = last_tid(db)
    started = time.monotonic()
    with pytest.raises(BudgetExceeded, match="stopped") as info:
        budgeted.send("genesis", selector)
    assert info.value.limit in ("cpu", "wall")
    assert time.monotonic() - started < FAST.cpu + FAST.grace + 2
    assert last_tid(db) == before
    assert "touched" not in budgeted.send("genesis", "slotNames")
    assert_serves(budgeted)


def test_wall_clock_budget_counts_time_not_cpu(db):
    kernel = Kernel(db, limits=Limits(cpu=30, wall=0.3, grace=1))
    define(kernel, "spin", "def spin(self):\n    while True:\n        pass\n")
    with pytest.raises(BudgetExceeded) as info:
        kernel.send("genesis", "spin")
    assert info.value.limit in ("wall", "cpu")
    assert "run" in str(info.value) or "CPU" in str(info.value)


def test_a_message_within_its_budget_is_untouched(budgeted):
    define(budgeted, "work", "def work(self):\n    n = 0\n    for i in range(20000):\n"
                             "        n = n + i\n    return n\n")
    assert budgeted.send("genesis", "work") == sum(range(20000))
    assert watchdog().in_flight() == []


def test_deep_recursion_is_a_method_failure(budgeted, db):
    define(budgeted, "deep", "def deep(self, n):\n    return deep(self, n + 1)\n")
    before = last_tid(db)
    with pytest.raises(MethodFailed, match="recursed too deeply"):
        budgeted.send("genesis", "deep:", [0])
    assert last_tid(db) == before
    assert_serves(budgeted)


def test_memory_error_is_the_memory_budget(budgeted, db):
    define(budgeted, "hog", "def hog(self):\n    self.touched = 1\n    return 'x' * (10 ** 15)\n")
    before = last_tid(db)
    with pytest.raises(BudgetExceeded, match="memory") as info:
        budgeted.send("genesis", "hog")
    assert info.value.limit == "memory"
    assert last_tid(db) == before
    assert_serves(budgeted)


class _Signal(BaseException):
    """Stands for a BaseException class method code found somewhere."""


@pytest.fixture
def raising_primitive(monkeypatch):
    kinds = {"SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt,
             "GeneratorExit": GeneratorExit, "BaseException": BaseException, "found": _Signal}

    def test_raise(kind):
        raise kinds[kind]("from method code")

    monkeypatch.setitem(uvm_methods._primitives, "test_raise", test_raise)


@pytest.mark.parametrize("kind", ["SystemExit", "KeyboardInterrupt", "GeneratorExit",
                                  "BaseException", "found"])
def test_base_exceptions_from_method_code_are_method_failures(
        budgeted, db, raising_primitive, kind):
    define(budgeted, f"raise_{kind}", f"def raise_{kind}(self):\n    self.touched = 1\n"
                                      f"    test_raise({kind!r})\n")
    before = last_tid(db)
    with pytest.raises(MethodFailed, match="raised"):
        budgeted.send("genesis", f"raise_{kind}")
    assert last_tid(db) == before
    assert_serves(budgeted)


def test_huge_error_messages_are_capped(budgeted):
    define(budgeted, "shout", "def shout(self):\n    raise ValueError('x' * 30000000)\n")
    with pytest.raises(MethodFailed) as info:
        budgeted.send("genesis", "shout")
    text = str(info.value)
    assert len(text) <= MAX_ERROR_CHARS
    assert "cut: the message had" in text


def test_a_reply_over_the_limit_is_refused_and_nothing_applied(db):
    kernel = Kernel(db, limits=FAST, max_reply_bytes=10_000)
    define(kernel, "big", "def big(self):\n    self.touched = 1\n    return ['y' * 100] * 200\n")
    before = last_tid(db)
    with pytest.raises(ReplyTooLarge, match="takes"):
        kernel.send("genesis", "big")
    assert last_tid(db) == before
    assert "touched" not in kernel.send("genesis", "slotNames")
    assert MAX_REPLY_BYTES < 1 << 20  # bridge.codec.MAX_FRAME


def test_the_reply_limit_follows_the_bridge_frame():
    from bridge.codec import MAX_FRAME

    assert MAX_FRAME - 32 * 1024 <= MAX_REPLY_BYTES < MAX_FRAME


def _spin_in_a_scope() -> None:
    with scope(Limits(cpu=0.2, wall=5, grace=1)):
        while True:
            pass


def test_scope_outside_the_kernel_turns_the_signal_into_budget_exceeded():
    with pytest.raises(BudgetExceeded) as info:
        _spin_in_a_scope()
    assert info.value.limit == "cpu"
    # no stray signal reaches this thread afterwards
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass


def test_scopes_in_several_threads_stop_only_the_one_over_budget():
    results: dict[str, object] = {}

    def good():
        with scope(Limits(cpu=2, wall=5, grace=1)):
            end = time.monotonic() + 0.6
            while time.monotonic() < end:
                time.sleep(0.01)
        results["good"] = "done"

    def bad():
        try:
            with scope(Limits(cpu=0.2, wall=5, grace=1)):
                while True:
                    pass
        except BudgetExceeded as exc:
            results["bad"] = exc.limit

    threads = [threading.Thread(target=good), threading.Thread(target=bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {"good": "done", "bad": "cpu"}


def test_limits_from_the_environment_and_bad_values():
    assert Limits.from_env({"BATOS_BUDGET_CPU": "2.5", "BATOS_BUDGET_WALL": "9"}) == Limits(
        cpu=2.5, wall=9.0)
    assert Limits.from_env({"BATOS_BUDGET_CPU": "2.5"}, cpu=1.0).cpu == 1.0
    with pytest.raises(ValueError, match="BATOS_BUDGET_WALL"):
        Limits.from_env({"BATOS_BUDGET_WALL": "soon"})
    with pytest.raises(ValueError, match="positive"):
        Limits(cpu=0)


def test_over_budget_is_not_an_exception_method_code_could_catch():
    assert not issubclass(OverBudget, Exception)
    assert not issubclass(BudgetExceeded, BaseException) or issubclass(BudgetExceeded, Exception)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_generator_left_in_a_cycle_cannot_hang_a_later_garbage_collection(
        budgeted, monkeypatch):
    import gc

    import uvm.watchdog

    monkeypatch.setattr(uvm.watchdog, "GC_LIMIT", 0.3)
    define(budgeted, "trap", (
        "def trap(self):\n    def spin(box):\n        try:\n            yield 1\n"
        "        finally:\n            while True:\n                pass\n"
        "    box = []\n    g = spin(box)\n    box.append(g)\n    for x in g:\n"
        "        break\n    return 1\n"))
    assert budgeted.send("genesis", "trap") == 1  # the trap is garbage now, in a cycle
    done = threading.Event()

    def collect():
        gc.collect()  # runs the generator's finally, outside any message
        done.set()

    threading.Thread(target=collect, daemon=True).start()
    assert done.wait(10), "the garbage collection never ended"
    # no signal is left over for the thread that collected, nor for this one
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        pass
    assert_serves(budgeted)
