"""The UI's view models against a real supervisor on loopback, without a window.

Callbacks are delivered to a ``Mailbox`` that the test pumps (the window's seam is
``Clock.schedule_once``); every wait has a deadline.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.integration.supervisor_fixtures import (
    Supervisor,
    Supervisors,
    free_port,
    supervisors_fixture,  # noqa: F401
)
from ui_seed import models

pytestmark = pytest.mark.integration

WAIT = 30.0


@pytest.fixture
def sup(supervisors: Supervisors) -> Supervisor:
    return supervisors.start()


@pytest.fixture
def session(sup: Supervisor) -> Iterator[tuple[models.Session, models.Mailbox]]:
    mailbox = models.Mailbox()
    sess = models.Session(sup.endpoint, deliver=mailbox, timeout=10)
    try:
        sess.start()
        mailbox.pump(lambda: sess.browser.view and sess.incarnations.status
                     and sess.audit.verify, WAIT)
        yield sess, mailbox
    finally:
        sess.close()


def test_browser_shows_genesis_and_follows_its_parent(session) -> None:
    sess, mailbox = session
    view = sess.browser.view
    assert view.names == ["genesis"]
    assert sess.state == "serving"
    slots = {s.name: s for s in view.slots}
    assert slots["description"].value.startswith("The primordial prototype")
    assert slots["name"].text == '"genesis"'
    parent = slots["parent*"]
    assert parent.kind == "parent"
    assert parent.refs[0][1] == "traits"
    sess.browser.open(parent.refs[0][0])
    mailbox.pump(lambda: sess.browser.view.names == ["traits"], WAIT)
    methods = {s.name: s for s in sess.browser.view.slots if s.kind == "method"}
    assert methods["defineMethod_source"].selector == "defineMethod:source:"
    sess.browser.back()
    mailbox.pump(lambda: sess.browser.view.names == ["genesis"], WAIT)


def test_console_result_and_remote_error(session) -> None:
    sess, mailbox = session
    console = sess.console
    console.send("genesis", "setSlot:value:", '["colour", "red"]')
    mailbox.pump(lambda: len(console.entries) == 1 and not console.busy, WAIT)
    console.send("genesis", "colour")
    mailbox.pump(lambda: len(console.entries) == 2 and not console.busy, WAIT)
    assert console.last["result"] == "red"
    assert console.last["error"] is None
    assert console.last["synthesized"] is False
    console.send("nobody-by-this-name", "printString")
    mailbox.pump(lambda: len(console.entries) == 3 and not console.busy, WAIT)
    error = console.last["error"]
    assert error.kind == "remote", error
    assert error.type == "UnknownTarget", error


def test_a_missing_selector_goes_to_synthesis_and_says_why_it_failed(session) -> None:
    sess, mailbox = session
    console = sess.console
    console.send("genesis", "frobnicate:", "[1]")
    mailbox.pump(lambda: console.busy and console.synthesizing, WAIT)
    mailbox.pump(lambda: console.entries and not console.busy, WAIT)
    last = console.last
    assert last["synthesized"] is True
    assert not console.synthesizing
    # no mind is configured for this supervisor: the error names the selector and the fix
    assert last["error"] is not None, last
    assert "frobnicate" in last["error"].message, last


def test_history_diff_and_rollback(session, sup: Supervisor) -> None:
    sess, mailbox = session
    for n in (1, 2):
        sup.client.send("genesis", "defineMethod:source:", "answer",
                        f"def answer(self):\n    return {n}\n", f"try {n}")
    history = sess.history
    history.load("genesis", "answer")
    mailbox.pump(lambda: len(history.versions) == 2 and not history.busy, WAIT)
    assert history.versions[1]["reason"] == "try 2"
    assert "+    return 2" in history.diff(1, 2)
    history.rollback(1)
    mailbox.pump(lambda: len(history.versions) == 3 and not history.busy, WAIT)
    assert history.versions[-1]["source"] == history.versions[0]["source"]
    assert sup.client.send("genesis", "answer") == 1


def test_incarnations_follow_the_event_stream(session, sup: Supervisor) -> None:
    sess, mailbox = session
    incs = sess.incarnations
    first = incs.rows[0]
    assert first["role"] == "active"
    assert first["pid"] > 0
    assert first["env_id"] == "current"
    assert isinstance(first["packages"], dict)
    assert first["served"] >= 0
    assert sess.subscriber is not None, "a local supervisor's event stream is subscribed"
    os.kill(first["pid"], signal.SIGKILL)

    def replaced() -> bool:
        kinds = [e["kind"] for e in incs.events]
        return ("incarnation.exited" in kinds and "incarnation.ready" in kinds
                and any(r["pid"] != first["pid"] and r["state"] == "ready" for r in incs.rows))
    mailbox.pump(replaced, 60)


def test_audit_reports_the_chain(session) -> None:
    sess, _mailbox = session
    assert sess.audit.rows == []
    assert sess.audit.verify["ok"] is True


def test_an_unreachable_supervisor_is_named() -> None:
    mailbox = models.Mailbox()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    sess = models.Session(endpoint, deliver=mailbox, timeout=1)
    ready: list[bool] = []
    sess.on_first_view(ready.append)
    try:
        sess.start()
        mailbox.pump(lambda: ready, 15)
        assert ready == [False]
        assert sess.state == "unreachable"
        assert sess.error.kind == "unreachable"
        assert endpoint in sess.error.message
    finally:
        sess.close()
