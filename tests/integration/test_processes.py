"""The image across real processes: the CLI, the FileStorage lock, and ZEO.

What this proves, each with separate OS processes and no mocks:

* what one process writes (a clone registered by name, data slots of every
  kind, methods with their history) another process reads back the same;
* ``batos bootstrap`` on a bootstrapped image changes nothing, not even the
  storage's last transaction id;
* ``batos verify`` accepts a bootstrapped image and rejects one with a Genesis
  slot removed, naming the slot;
* ``batos send`` to an unknown target (or selector) exits 1 with one error line
  on stderr (a JSON one with ``--json``) and leaves the image untouched;
* a second writer on a FileStorage held by another process gets ``ImageLocked``
  (in-process and through the CLI), while read-only ``verify`` still works;
* two processes write to one image through a real ZEO server at the same
  time, including to one shared object; no write is lost and each then sees
  all the other's writes;
* through ZEO, a message sent after another process's message returned reads
  that message's writes (no stale snapshot).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ZODB.FileStorage import FileStorage

from tests.conftest import wait_until
from tests.integration.lines import Lines
from tests.integration.zeo_fixtures import kill_and_reap, zeo_address_fixture  # noqa: F401
from uvm import DoesNotUnderstand, ImageLocked, Kernel, bootstrap, open_db

pytestmark = pytest.mark.integration

CHILDREN = Path(__file__).parent / "children"
ROUNDTRIP = str(CHILDREN / "persist_roundtrip.py")
_LOCAL_BATOS = Path(sys.executable).with_name("batos")
BATOS = str(_LOCAL_BATOS) if _LOCAL_BATOS.exists() else shutil.which("batos") or "batos"
TIMEOUT = 60


def spawn(args: list[str], log: Path) -> subprocess.Popen[str]:
    with log.open("w") as err:
        return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                text=True, start_new_session=True)


def run(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, start_new_session=True,
                          env={**os.environ, "BATOS_HOME": str(home)})


def batos(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(home, BATOS, *args)


def last_tid(path: Path) -> bytes:
    storage = FileStorage(str(path), read_only=True)
    try:
        return storage.lastTransaction()
    finally:
        storage.close()


@pytest.fixture
def image(image_path: Path) -> Path:
    """A bootstrapped FileStorage image, closed so that other processes can open it."""
    db = open_db(image_path)
    try:
        bootstrap(db)
    finally:
        db.close()
    return image_path


def test_what_one_process_writes_another_reads(image: Path, tmp_path: Path) -> None:
    wrote = run(tmp_path, sys.executable, ROUNDTRIP, "write", str(image))
    assert wrote.returncode == 0, wrote.stderr
    uuid = json.loads(wrote.stdout)["uuid"]

    got = run(tmp_path, sys.executable, ROUNDTRIP, "read", str(image))
    assert got.returncode == 0, got.stderr
    seen = json.loads(got.stdout)
    assert seen["uuid"] == uuid
    assert seen["names"] == ["widget"]
    assert {"width", "height", "tags", "meta", "owner", "area", "scaledBy", "parent*"} <= set(
        seen["slots"])
    assert seen["values"] == {"width": 3, "height": 4, "tags": ["a", "b"],
                              "meta": {"color": "blue", "n": 1}, "owner": {"$ref": seen["genesis"]}}
    assert (seen["area"], seen["scaled"]) == (12, 120)
    assert seen["history"] == [[1, "def area(self):\n    return self.width * self.height\n",
                                "first cut"]]

    cli = batos(tmp_path, "send", "--image", str(image), "widget", "scaledBy:", "2")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == 24


def test_bootstrap_twice_changes_nothing(image_path: Path, tmp_path: Path) -> None:
    first = batos(tmp_path, "bootstrap", "--image", str(image_path))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("bootstrapped")
    tid, size = last_tid(image_path), image_path.stat().st_size

    second = batos(tmp_path, "bootstrap", "--image", str(image_path))
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout
    assert last_tid(image_path) == tid
    assert image_path.stat().st_size == size


def test_verify_passes_then_names_a_removed_genesis_slot(image: Path, tmp_path: Path) -> None:
    ok = batos(tmp_path, "verify", "--image", str(image))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("verify ok")

    removed = batos(tmp_path, "send", "--image", str(image), "traits", "removeSlot:", "printString")
    assert removed.returncode == 0, removed.stderr

    bad = batos(tmp_path, "verify", "--image", str(image))
    assert bad.returncode != 0
    assert "traits.printString" in bad.stderr
    assert bad.stderr.splitlines()[-1].startswith("batos verify: VerifyFailed: verify failed: 1 problem")


@pytest.mark.parametrize(("target", "selector", "error"), [
    ("noSuchObject", "printString", "UnknownTarget"),
    ("genesis", "noSuchSelector", "NoMind"),  # a DoesNotUnderstand: and no mind to ask
])
def test_send_error_is_one_line_or_json_on_stderr_and_changes_nothing(
    image: Path, tmp_path: Path, target: str, selector: str, error: str
) -> None:
    before = last_tid(image)
    result = batos(tmp_path, "send", "--image", str(image), "--json", target, selector)
    assert result.returncode == 1
    assert result.stdout == ""
    err = json.loads(result.stderr)["error"]
    assert err["type"] == error
    assert (target if error == "UnknownTarget" else selector) in err["message"]
    plain = batos(tmp_path, "send", "--image", str(image), target, selector)
    assert plain.returncode == 1
    assert plain.stdout == ""
    (line,) = plain.stderr.splitlines()
    assert line.startswith(f"batos send: {error}: ")
    assert (target if error == "UnknownTarget" else selector) in line
    assert last_tid(image) == before


def test_second_writer_gets_image_locked(image: Path, tmp_path: Path) -> None:
    holder = spawn([sys.executable, str(CHILDREN / "hold_image.py"), str(image)],
                   tmp_path / "holder.err")
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert Lines(holder.stdout).expect() == "READY", (tmp_path / "holder.err").read_text()

        with pytest.raises(ImageLocked, match="open in another process"):
            open_db(image)
        cli = batos(tmp_path, "send", "--image", str(image), "--json", "genesis", "printString")
        assert cli.returncode == 1
        assert json.loads(cli.stderr)["error"]["type"] == "ImageLocked"
        plain = batos(tmp_path, "send", "--image", str(image), "genesis", "printString")
        assert plain.returncode == 1
        assert plain.stderr.startswith("batos send: ImageLocked: ")
        reader = batos(tmp_path, "verify", "--image", str(image))  # read-only: takes no lock
        assert reader.returncode == 0, reader.stderr

        holder.stdin.write("stop\n")
        holder.stdin.close()
        assert holder.wait(timeout=TIMEOUT) == 0, (tmp_path / "holder.err").read_text()
    finally:
        kill_and_reap(holder)
    open_db(image).close()  # the holder is gone, and so is its lock


class Peer:
    """The ``zeo_peer.py`` child: one command line in, one answer line out."""

    def __init__(self, proc: subprocess.Popen[str], log: Path) -> None:
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.proc, self.log, self.lines = proc, log, Lines(proc.stdout)

    def tell(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def answer(self) -> Any:
        line = self.lines.expect()
        assert line is not None, f"the peer died: {self.log.read_text()}"
        return json.loads(line)

    def ask(self, command: str) -> Any:
        self.tell(command)
        return self.answer()


@pytest.fixture
def zeo_kernel(zeo_address: str) -> Iterator[Kernel]:
    """A kernel in this process on the ZEO image, with objects alpha, beta and shared."""
    db = open_db(zeo=zeo_address)
    try:
        assert bootstrap(db).changed
        k = Kernel(db)
        for name in ("alpha", "beta", "shared"):
            k.send(k.send("genesis", "clone")["$ref"], "registerAs:", [name])
        k.send("shared", "setSlot:value:", ["count", 0])
        k.send("shared", "defineMethod:source:",
               ["bump", "def bump(self):\n    self.count = self.count + 1\n    return self.count\n"])
        yield k
    finally:
        db.close()


@pytest.fixture
def peer(zeo_address: str, zeo_kernel: Kernel, tmp_path: Path) -> Iterator[Peer]:
    """A second process on the same ZEO image."""
    log = tmp_path / "peer.err"
    proc = spawn([sys.executable, str(CHILDREN / "zeo_peer.py"), zeo_address], log)
    try:
        child = Peer(proc, log)
        assert child.lines.expect() == "READY", log.read_text()
        yield child
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(timeout=TIMEOUT) == 0, log.read_text()
    finally:
        kill_and_reap(proc)


def test_two_processes_write_through_zeo_concurrently(
    zeo_kernel: Kernel, peer: Peer, zeo_address: str, tmp_path: Path
) -> None:
    k, n = zeo_kernel, 40
    bumps = 2 * len(range(0, n, 4))  # a hot object both write, but not every message
    peer.tell(f"fill beta c {n}")  # the peer's loop runs while this process runs its own
    for i in range(n):
        if i % 4 == 0:
            k.send("shared", "bump")
        k.send("alpha", "setSlot:value:", [f"p{i}", i])
    assert peer.answer() == "done"

    # Each sees the other's writes (eventually: immediate visibility is the next test's).
    def own(prefix: str, obj: str) -> dict[str, Any]:
        return {s: k.send(obj, s) for s in k.send(obj, "slotNames") if s.startswith(prefix)}

    wait_until(lambda: k.send("shared", "count") == bumps, timeout=10)
    wait_until(lambda: own("c", "beta") == {f"c{i}": i for i in range(n)}, timeout=10)
    wait_until(lambda: peer.ask("slots alpha p") == {f"p{i}": i for i in range(n)}, timeout=10)
    wait_until(lambda: peer.ask("get shared count") == bumps, timeout=10)

    cli = batos(tmp_path, "send", "--zeo", zeo_address, "shared", "count")  # a fresh client
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == bumps
    verified = batos(tmp_path, "verify", "--zeo", zeo_address)
    assert verified.returncode == 0, verified.stderr


def test_message_sees_what_another_zeo_client_committed_before_it(
    zeo_kernel: Kernel, peer: Peer, zeo_address: str
) -> None:
    """A message sent after another process's message returned must read its write."""
    k, stale = zeo_kernel, []
    for v in range(1, 201):
        k.send("genesis", "setSlot:value:", ["x", v])
        if (got := peer.ask("get genesis x")) != v:
            stale.append(f"peer read x={got} after this process committed x={v}")
        assert peer.ask(f"set genesis y {v}") == "ok"
        try:
            got = k.send("genesis", "y")
        except DoesNotUnderstand as exc:
            got = exc.to_dict()
        if got != v:
            stale.append(f"this process read y={got} after the peer committed y={v}")
    other = open_db(zeo=zeo_address)  # a second client in this process: the same, no pipe
    try:
        k2 = Kernel(other)
        for v in range(1, 101):
            k.send("genesis", "setSlot:value:", ["z", v])
            try:
                got = k2.send("genesis", "z")
            except DoesNotUnderstand as exc:
                got = exc.to_dict()
            if got != v:
                stale.append(f"a second client read z={got} after the first committed z={v}")
    finally:
        other.close()
    assert not stale, f"{len(stale)} of 500 reads were stale: {stale[:4]}"
