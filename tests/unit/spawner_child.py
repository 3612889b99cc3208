"""A child for tests/unit/test_spawner.py, run by the fork-server as ``-m tests.unit.spawner_child``.

``echo``: copy stdin to stdout, a line to stderr, exit 0. ``exit N``: exit N.
``hold``: say ``up`` on stdout and wait for a signal (never on stdin: its end of file
must not be what ends it).
"""

from __future__ import annotations

import os
import signal
import sys

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "echo":
        data = sys.stdin.buffer.read()
        sys.stdout.buffer.write(data.upper())
        sys.stderr.write(f"pid {os.getpid()} sid {os.getsid(0)}\n")
        sys.exit(0)
    if mode == "exit":
        sys.exit(int(sys.argv[2]))
    if mode == "hold":
        print("up", flush=True)
        while True:
            signal.pause()
