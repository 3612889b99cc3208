"""Method code gets capabilities, not modules: namespaces, per-call state, the guards' holes.

Also the test-only switch ``BATOS_UNSAFE_TEST_EXPOSE_OS`` that bypasses the Python wall
for the tests of the OS layer.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from uvm import methods

ROOT = Path(__file__).resolve().parents[2]


# --- the test-only switch -------------------------------------------------------------


def test_the_unsafe_switch_is_off_unless_set_to_one(caplog):
    caplog.set_level(logging.WARNING, logger="batos.methods")
    assert methods._unsafe_test_modules({}) == {}
    assert methods._unsafe_test_modules({methods.UNSAFE_TEST_EXPOSE_OS: "0"}) == {}
    assert methods._unsafe_test_modules({methods.UNSAFE_TEST_EXPOSE_OS: "yes"}) == {}
    assert not caplog.records
    assert "os" not in methods._GUARDS  # this test process was not started with it


def test_the_unsafe_switch_exposes_the_real_modules_and_warns_loudly(caplog):
    caplog.set_level(logging.WARNING, logger="batos.methods")
    exposed = methods._unsafe_test_modules({methods.UNSAFE_TEST_EXPOSE_OS: "1"})
    assert sorted(exposed) == ["ctypes", "os", "socket", "subprocess"]
    assert exposed["os"] is os
    assert exposed["subprocess"] is subprocess
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "UNSAFE TEST BUILD" in record.getMessage()


def test_the_unsafe_switch_set_at_import_reaches_method_globals():
    probe = (
        "from uvm import methods\n"
        "f = methods.compile_method('def f(self):\\n    return os.getpid() == os.getpid()"
        " and subprocess.run is not None and socket.AF_INET > 0 and ctypes.CDLL is not None\\n')\n"
        "print(f(None))\n"
    )
    env = dict(os.environ, **{methods.UNSAFE_TEST_EXPOSE_OS: "1"})
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert "UNSAFE TEST BUILD" in done.stderr
