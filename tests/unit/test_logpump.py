"""supervisor.logpump: a child's output through a real pipe into a capped, rotated log."""

from __future__ import annotations

import os
import sys

import pytest

from supervisor import process
from supervisor.logpump import LogPump

CAP = 4096


def test_a_flood_leaves_two_capped_files_and_says_what_was_dropped(tmp_path):
    log = tmp_path / "inc.log"
    log.write_bytes(b"earlier\n")
    read_end, write_end = LogPump.pipe()
    pump = LogPump(read_end, log, max_bytes=CAP, name="inc").start()
    total = 0
    for i in range(50):
        chunk = bytes([65 + i % 26]) * 1000
        os.write(write_end, chunk)
        total += len(chunk)
    os.write(write_end, b"LAST")
    os.close(write_end)
    assert pump.wait(10)
    rotated = log.with_name("inc.log.1")
    sizes = [log.stat().st_size, rotated.stat().st_size]
    assert max(sizes) <= CAP + 512, sizes
    assert log.read_bytes().endswith(b"LAST")
    assert b"bytes of this output dropped so far" in log.read_bytes()
    assert pump.rotations >= 10
    assert pump.dropped >= total + len(b"earlier\n") + 4 - sum(sizes)
    assert sum(sizes) < total // 4


def test_a_tiny_cap_is_refused():
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(ValueError, match="at least 1024 bytes"):
            LogPump(read_end, "/nonexistent/x.log", max_bytes=10)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_child_spawned_with_a_cap_writes_into_a_pipe_it_cannot_seek_or_truncate(tmp_path):
    log = tmp_path / "child.log"
    program = ("import os, sys\n"
               "print(os.readlink('/proc/self/fd/1'), flush=True)\n"
               "for call in (lambda: os.ftruncate(2, 0), lambda: os.lseek(1, 0, 0)):\n"
               "    try:\n        call()\n    except OSError as exc:\n"
               "        print('refused', exc.errno, flush=True)\n"
               "sys.stderr.write('to stderr\\n')\n")
    proc = process.spawn([sys.executable, "-c", program], log_file=log, log_cap=CAP)
    assert proc.wait(30) == 0
    assert proc.log_pump.wait(10)
    text = log.read_text()
    assert text.startswith("pipe:")
    assert "refused 22" in text  # EINVAL: no truncate on a pipe
    assert "refused 29" in text  # ESPIPE: no seek
    assert "to stderr" in text


def test_the_supervisors_own_children_still_append_to_their_file(tmp_path):
    log = tmp_path / "zeo.log"
    proc = process.spawn([sys.executable, "-c", "import os; print(os.readlink('/proc/self/fd/1'))"],
                         log_file=log)
    assert proc.wait(30) == 0
    assert not hasattr(proc, "log_pump")
    assert log.read_text().strip() == str(log)
