"""One ``TransientError`` for every layer: ``lexicon.errors``' catches "retry later" anywhere.

Each package keeps its own error root; its retryable errors share the shared
floor's mixin (and each package re-exports the name), so one ``except`` catches
a retryable error of the image, the bridge, the mind and the crucible alike and
none of their permanent ones.
"""

from __future__ import annotations

import pytest

import bridge
import crucible
import uvm
import weaver
from lexicon.errors import TransientError
from uvm.errors import BudgetExceeded
from weaver.errors import AdapterBusy

RETRYABLE = [
    uvm.StorageUnavailable("the ZEO server is away"),
    uvm.RetriesExhausted("conflicts kept happening"),
    bridge.Timeout("no reply in time"),
    weaver.MindUnavailable("connection refused", url="http://127.0.0.1:9/v1"),
    weaver.MindTimeout("no answer in time"),
    AdapterBusy("every adapter is in use"),
    crucible.TrialUnavailable("no trial worker"),
    crucible.ReviewerUnavailable("the reviewer raised"),
]
PERMANENT = [
    uvm.InvalidRequest("wrong message"),
    uvm.DoesNotUnderstand("no such slot", selector="x", receiver="y"),
    BudgetExceeded("over budget", limit="cpu"),
    bridge.ProtocolError("bad frame"),
    bridge.RemoteError("Busy", "try later"),
    weaver.MindRejected("unknown model", status=404),
    weaver.NoMind(),
    crucible.InvalidProposal("neither source nor acts"),
]


@pytest.mark.parametrize("error", RETRYABLE, ids=lambda e: f"{type(e).__module__}.{type(e).__name__}")
def test_one_except_catches_every_layers_retryable_error(error):
    with pytest.raises(TransientError) as caught:
        raise error
    assert caught.value is error


def _raise_past_transient(error: Exception) -> None:
    try:
        raise error
    except TransientError:
        pytest.fail(f"{type(error).__name__} is not retryable, yet caught as one")


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: f"{type(e).__module__}.{type(e).__name__}")
def test_it_catches_no_permanent_error(error):
    assert not isinstance(error, TransientError)
    with pytest.raises(type(error)) as caught:
        _raise_past_transient(error)
    assert caught.value is error


def test_every_package_re_exports_the_one_class():
    for package in (uvm, bridge, weaver, crucible):
        assert package.TransientError is TransientError
        assert "TransientError" in package.__all__
