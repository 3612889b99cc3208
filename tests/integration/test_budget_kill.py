"""Budgets that need a process of their own: code holding the GIL in C, and a message that
will not unwind, end the process (real subprocesses running a real kernel and image).

Each test runs ``python -c SCRIPT`` with a FileStorage image, a kernel with a small budget
and hard exits on (as the incarnation turns them on), sends a message, and watches the
process from outside: it must end by itself within the budget plus the grace (plus
slack for a loaded machine), having said which request it ends for when it could.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent('''
    import sys, time
    from uvm import Kernel, bootstrap, open_db, methods
    from uvm.budget import Limits, watchdog, KILL_EXIT_CODE

    def test_hold_gil(n):
        return pow(3, n) > 0  # big-int arithmetic in C: holds the GIL, checks nothing

    def say(*parts):  # one write per line: the watchdog's thread prints too
        sys.stdout.write(" ".join(str(p) for p in parts) + "\\n")
        sys.stdout.flush()

    methods.method_globals({"test_hold_gil": test_hold_gil})
    db = open_db(sys.argv[1])
    bootstrap(db)
    limits = Limits(cpu=float(sys.argv[3]), wall=30.0, grace=float(sys.argv[4]))
    kernel = Kernel(db, limits=limits)
    watchdog().enable_hard_exit(
        limits,
        on_suspect=lambda rid, why: say("SUSPECT", rid, why),
        on_kill=lambda rid, why: say("KILLING", rid, why),
    )
    sources = {
        "gil": "def gil(self):\\n    self.touched = 1\\n    return test_hold_gil(40000000)\\n",
        "nested": ("def nested(self, n):\\n    self.touched = 1\\n    try:\\n"
                   "        if n > 0:\\n            nested(self, n - 1)\\n"
                   "        while True:\\n            pass\\n    finally:\\n"
                   "        while True:\\n            pass\\n"),
        "busy": "def busy(self):\\n    while True:\\n        pass\\n",
        "grab": ("def grab(self):\\n    self.touched = 1\\n"
                 "    return len('x' * (700 * 1024 * 1024))\\n"),
    }
    selector = sys.argv[2]
    kernel.send("genesis", "defineMethod:source:", [selector, sources[selector]])
    if selector == "grab":  # the address-space limit the process lock sets live (RLIMIT_AS)
        import resource
        with open("/proc/self/status") as status:
            vm = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), resource.RLIM_INFINITY))
    args = [300] if selector == "nested" else []
    say("SENDING")
    try:
        kernel.send("genesis", selector + (":" if args else ""), args, request_id="req-" + selector)
    except Exception as exc:
        say("ANSWERED", type(exc).__name__, exc)
    say("SERVING", kernel.send("genesis", "printString")[:9])
    say("TOUCHED", "touched" in kernel.send("genesis", "slotNames"))
''')


def run(tmp_path: Path, selector: str, cpu: float, grace: float, timeout: float):
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "image.fs"), selector, str(cpu), str(grace)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the process did not end by itself within {timeout}s:\n{out}\n{err[-3000:]}")
    return proc.returncode, out, err, time.monotonic() - started


def test_c_code_holding_the_gil_ends_the_process(tmp_path):
    code, out, err, took = run(tmp_path, "gil", cpu=0.5, grace=1.0, timeout=60)
    assert "SENDING" in out
    assert "SERVING" not in out  # the message never came back: the process ended
    assert code == 1, (code, out, err[-2000:])  # faulthandler's _exit(1)
    assert "Timeout" in err
    assert "test_hold_gil" in err  # the stack of the GIL holder
    assert took < 30


def test_a_message_that_will_not_unwind_ends_the_process_after_saying_why(tmp_path):
    from uvm.budget import KILL_EXIT_CODE

    code, out, err, _took = run(tmp_path, "nested", cpu=0.3, grace=0.3, timeout=60)
    assert code == KILL_EXIT_CODE, (code, out, err[-2000:])
    assert "SUSPECT req-nested cpu:" in out
    assert "KILLING req-nested" in out
    assert "did not stop" in out


def test_with_hard_exits_on_a_plain_busy_loop_is_still_only_answered(tmp_path):
    code, out, err, _took = run(tmp_path, "busy", cpu=0.3, grace=2.0, timeout=60)
    assert code == 0, (code, out, err[-2000:])
    assert "ANSWERED BudgetExceeded" in out
    assert "SUSPECT req-busy cpu:" in out
    assert "SERVING <genesis" in out


def test_memory_past_the_address_space_limit_is_the_memory_budget(tmp_path):
    """700 MB under a 256 MB address-space allowance: answered, nothing applied, serving."""
    code, out, err, _took = run(tmp_path, "grab", cpu=5, grace=2.0, timeout=60)
    assert code == 0, (code, out, err[-2000:])
    assert "ANSWERED BudgetExceeded" in out, out
    assert "out of memory" in out
    assert "SERVING <genesis" in out
    assert "TOUCHED False" in out
