"""Calls from method code (``self.other()``): a ``BoundMethod`` refuses a quarantined
method exactly as a message to it is refused."""

from __future__ import annotations

import pytest

from uvm import Kernel, MethodFailed
from uvm.errors import Quarantined

INNER = "def inner(self):\n    self.ran = True\n    return 'inner ran'\n"


@pytest.fixture
def caller(kernel: Kernel) -> str:
    ref = kernel.send("genesis", "clone")["$ref"]
    kernel.send(ref, "defineMethod:source:", ["inner", INNER])
    kernel.send(ref, "defineMethod:source:", [
        "outer", "def outer(self):\n    return self.inner()\n"])
    kernel.send(ref, "defineMethod:source:", [
        "swallow", "def swallow(self):\n    try:\n        return self.inner()\n"
                   "    except Exception as exc:\n        return 'caught: ' + str(exc)\n"])
    return ref


def test_a_nested_call_of_a_quarantined_method_runs_nothing(kernel: Kernel, caller: str) -> None:
    assert kernel.send(caller, "outer") == "inner ran"
    kernel.send(caller, "removeSlot:", ["ran"])
    kernel.quarantine(caller, "inner", "killed two incarnations", "req-7")
    with pytest.raises((Quarantined, MethodFailed)) as info:
        kernel.send(caller, "outer")
    assert "quarantined" in str(info.value)
    assert "req-7" in str(info.value)
    # caught by the caller's code, it still ran nothing
    caught = kernel.send(caller, "swallow")
    assert caught.startswith("caught: ")
    assert "quarantined" in caught
    assert "ran" not in kernel.send(caller, "slotNames")


def test_a_released_method_runs_again_when_called_from_a_method(
        kernel: Kernel, caller: str) -> None:
    kernel.quarantine(caller, "inner", "suspect", "req-8")
    kernel.release(caller, "inner", by="alice", reason="fixed")
    assert kernel.send(caller, "outer") == "inner ran"
