"""Quarantine: a method marked by the supervisor's Quarantine runs nothing until a person
releases it; marking is idempotent and recorded under the image's own root key."""

from __future__ import annotations

import pytest

from uvm.errors import BadArguments, Quarantined, UnknownTarget
from uvm.quarantine import KEY, history


def last_tid(db):
    return db.storage.lastTransaction()


@pytest.fixture
def poisoned(kernel):
    kernel.send("genesis", "defineMethod:source:", [
        "crash", "def crash(self):\n    self.hits = (self.hits if 'hits' in slot_names(self) "
                 "else 0) + 1\n    return 'ran'\n"])
    child = kernel.send("genesis", "clone")["$ref"]
    kernel.send(child, "removeSlot:", ["crash"])  # a clone copies methods: delegate instead
    kernel.send(child, "setSlot:value:", ["parent*", {"$ref": "genesis"}])
    return child


def test_a_quarantined_method_runs_nothing_and_says_how_to_release(kernel, db, poisoned):
    record = kernel.quarantine(poisoned, "crash", "killed inc-2 and inc-3 (SIGSEGV)", "req-1")
    genesis = kernel.send("genesis", "uuid")
    # resolved to the object that holds the method, not the receiver of the message
    assert record["holder"] == genesis
    assert record["selector"] == "crash"
    assert record["request"] == "req-1"
    assert record["method"] is True
    before = last_tid(db)
    for target in (poisoned, "genesis"):
        with pytest.raises(Quarantined) as info:
            kernel.send(target, "crash")
        text = str(info.value)
        assert "killed inc-2 and inc-3" in text
        assert "req-1" in text
        assert f"batos quarantine release {genesis} crash" in text
    assert last_tid(db) == before
    assert "hits" not in kernel.send("genesis", "slotNames")


def test_quarantine_is_idempotent_and_listed(kernel, db, poisoned):
    first = kernel.quarantine(poisoned, "crash", "first", "req-1")
    before = last_tid(db)
    again = kernel.quarantine("genesis", "crash", "second", "req-2")
    assert again == first  # the first record stays
    assert last_tid(db) == before  # nothing written
    listed = kernel.quarantined()
    assert [(r["selector"], r["request"]) for r in listed] == [("crash", "req-1")]
    assert kernel.read(lambda c: len(c.connection.root()[KEY]["log"])) == 1


def test_a_person_releases_it_and_the_history_keeps_both(kernel, poisoned):
    kernel.quarantine(poisoned, "crash", "killed twice", "req-9")
    lifted = kernel.release("genesis", "crash", by="alice", reason="fixed the loop")
    assert lifted["request"] == "req-9"
    assert kernel.send(poisoned, "crash") == "ran"
    assert kernel.quarantined() == []
    events = kernel.read(lambda c: history(c.connection.root()))
    assert [(e["event"], e["by"]) for e in events] == [("quarantined", "supervisor"),
                                                        ("released", "alice")]
    assert events[1]["reason"] == "fixed the loop"
    with pytest.raises(BadArguments, match="not quarantined"):
        kernel.release("genesis", "crash", by="alice")


def test_a_message_that_reached_no_method_is_recorded_but_blocks_nothing(kernel):
    record = kernel.quarantine("genesis", "neverDefined", "killed twice", "req-5")
    assert record["method"] is False
    assert [r["request"] for r in kernel.quarantined()] == ["req-5"]
    assert kernel.send("genesis", "printString").startswith("<genesis")


def test_quarantine_of_an_unknown_target_is_a_clear_error(kernel, db):
    before = last_tid(db)
    with pytest.raises(UnknownTarget):
        kernel.quarantine("nobody", "crash", "x", "req-1")
    assert last_tid(db) == before


def test_the_mark_survives_a_new_process_view(kernel, db, poisoned):
    """The mark is in the image: a second kernel (another incarnation) refuses too."""
    from uvm import Kernel

    kernel.quarantine(poisoned, "crash", "killed twice", "req-1")
    other = Kernel(db)
    with pytest.raises(Quarantined):
        other.send(poisoned, "crash")


def test_a_person_lists_and_releases_from_the_command_line(tmp_path, capsys):
    import json

    from batos.main import main
    from uvm import Kernel, bootstrap, open_db

    path = tmp_path / "cli.fs"
    db = open_db(path)
    try:
        bootstrap(db)
        kernel = Kernel(db)
        kernel.send("genesis", "defineMethod:source:", ["crash", "def crash(self):\n    return 1\n"])
        kernel.quarantine("genesis", "crash", "killed twice", "req-7")
    finally:
        db.close()
    assert main(["quarantine", "list", "--image", str(path)]) == 0
    shown = capsys.readouterr().out  # a line per method, for a person
    assert "crash" in shown
    assert "req-7" in shown
    assert main(["quarantine", "list", "--image", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["selector"], r["request"]) for r in listed] == [("crash", "req-7")]
    assert main(["quarantine", "release", "genesis", "crash", "--by", "bob",
                 "--image", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["released"]["request"] == "req-7"
    assert main(["quarantine", "release", "genesis", "crash", "--by", "bob",
                 "--image", str(path)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("batos quarantine release: BadArguments: ")
    assert "not quarantined" in line
    assert main(["quarantine", "release", "genesis", "crash", "--by", "bob",
                 "--image", str(path), "--json"]) == 1
    assert json.loads(capsys.readouterr().err)["error"]["type"] == "BadArguments"
    assert main(["quarantine", "list", "--history", "--image", str(path), "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["event"] for e in events] == ["quarantined", "released"]


def test_a_release_from_a_fresh_process_lifts_the_mark(tmp_path):
    """Released where the method is still a ghost (a new process: the CLI, another
    incarnation): the mark itself goes, not only the record."""
    from uvm import Kernel, bootstrap, open_db
    from uvm.errors import Quarantined

    path = tmp_path / "fresh.fs"
    db = open_db(path)
    try:
        bootstrap(db)
        kernel = Kernel(db)
        kernel.send("genesis", "defineMethod:source:", ["crash", "def crash(self):\n    return 1\n"])
        kernel.quarantine("genesis", "crash", "killed twice", "req-3")
    finally:
        db.close()
    db = open_db(path)
    try:
        Kernel(db).release("genesis", "crash", by="carol")
    finally:
        db.close()
    db = open_db(path)
    try:
        assert Kernel(db).send("genesis", "crash") == 1
    except Quarantined:
        pytest.fail("the mark survived the release")
    finally:
        db.close()


def test_a_clone_of_a_quarantined_method_is_quarantined_with_its_own_record(kernel, poisoned):
    """A clone holds its own copy of each method: the quarantine follows the code there,
    listed and released per holder."""
    genesis = kernel.send("genesis", "uuid")
    kernel.quarantine("genesis", "crash", "killed twice", "req-7")
    twin = kernel.send("genesis", "clone")["$ref"]
    with pytest.raises(Quarantined, match=f"batos quarantine release {twin} crash"):
        kernel.send(twin, "crash")
    listed = {r["holder"]: r for r in kernel.quarantined()}
    assert set(listed) == {genesis, twin}
    assert listed[twin]["request"] == "req-7"
    assert f"cloned from {genesis}" in listed[twin]["reason"]
    # a clone of the clone too
    grandchild = kernel.send(twin, "clone")["$ref"]
    with pytest.raises(Quarantined):
        kernel.send(grandchild, "crash")
    # released per holder: the clone runs again, the original stays quarantined
    kernel.release(twin, "crash", by="alice", reason="checked the copy")
    assert kernel.send(twin, "crash") == "ran"
    with pytest.raises(Quarantined):
        kernel.send("genesis", "crash")
    # an unmarked method's clone carries nothing
    kernel.release("genesis", "crash", by="alice")
    fresh = kernel.send("genesis", "clone")["$ref"]
    assert kernel.send(fresh, "crash") == "ran"
    assert {r["holder"] for r in kernel.quarantined()} == {grandchild}
