"""Method code gets capabilities, not modules: namespaces, per-call state, the guards' holes.

Also the test-only switch ``BATOS_UNSAFE_TEST_EXPOSE_OS`` that bypasses the Python wall
for the tests of the OS layer.
"""

from __future__ import annotations

import collections.abc
import decimal
import logging
import numbers
import os
import pickle
import random
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from uvm import capabilities, guards, methods

ROOT = Path(__file__).resolve().parents[2]


# --- the test-only switch -------------------------------------------------------------


def test_the_unsafe_switch_is_off_unless_set_to_one(caplog):
    caplog.set_level(logging.WARNING, logger="batos.methods")
    assert methods._unsafe_test_modules({}) == {}
    assert methods._unsafe_test_modules({methods.UNSAFE_TEST_EXPOSE_OS: "0"}) == {}
    assert methods._unsafe_test_modules({methods.UNSAFE_TEST_EXPOSE_OS: "yes"}) == {}
    assert not caplog.records
    assert "os" not in methods._GLOBALS  # this test process was not started with it


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


# --- helpers --------------------------------------------------------------------------


def body(text: str, head: str = "def f(self):") -> str:
    return head + "\n" + "\n".join("    " + line for line in text.splitlines()) + "\n"


def run(text: str, *args, head: str = "def f(self):", receiver=None):
    return methods.compile_method(body(text, head))(receiver, *args)


# --- the namespaces -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(capabilities.NAMES))
def test_each_namespace_is_frozen(name):
    space = capabilities.namespace(name)
    grant = sorted(space.names())[0] if space.names() else "anything"
    with pytest.raises(AttributeError, match="frozen"):
        setattr(space, grant, None)
    with pytest.raises(AttributeError, match="frozen"):
        delattr(space, grant)
    with pytest.raises(TypeError):
        pickle.dumps(space)
    top, _, rest = name.partition(".")
    reach = top + "".join(f".{part}" for part in rest.split(".") if part)
    for statement in (f"{reach}.{grant} = 1", f"del {reach}.{grant}"):
        with pytest.raises(TypeError, match="cannot modify"):
            run(f"import {name}\n{statement}")


@pytest.mark.parametrize("name", sorted(capabilities.NAMES))
def test_no_grant_is_a_module_or_shared_mutable_state(name):
    space = capabilities.namespace(name)
    for grant in space.names():
        value = space.grant(grant)
        assert not isinstance(value, types.ModuleType), f"{name}.{grant}"
        assert not isinstance(value, list | dict | set | bytearray), f"{name}.{grant}"
        if isinstance(value, type):
            # class-level mutable containers would be shared by every caller
            for klass in value.__mro__:
                for attr, held in vars(klass).items():
                    if not attr.startswith("_") and isinstance(held, list | dict | set):
                        with pytest.raises(AttributeError):
                            guards.guarded_getattr(value, attr)


@pytest.mark.parametrize(("reach", "attr"), [
    ("collections.abc.Sequence", "register"),
    ("collections.abc.Mapping", "register"),
    ("collections.ChainMap", "register"),
    ("numbers.Integral", "register"),
    ("fractions.Fraction", "register"),
    ("collections.Counter", "mro"),
])
def test_registries_of_abstract_classes_are_out_of_reach(reach, attr):
    module = reach.rpartition(".")[0].partition(".")[0]
    with pytest.raises(AttributeError, match="metaclass"):
        run(f"import {module}\nimport {reach.rpartition('.')[0]}\nreturn {reach}.{attr}(str)")
    assert not issubclass(str, numbers.Integral)
    assert not issubclass(int, collections.abc.Sequence)


def test_classes_answer_what_they_define():
    assert run("import datetime\nreturn datetime.date.fromisoformat('2024-02-29').isoformat()") \
        == "2024-02-29"
    assert run("import decimal\nreturn str(decimal.Decimal.from_float(0.5))") == "0.5"
    assert run("return int.from_bytes(b'\\x01', 'big')") == 1
    assert run("import collections.abc\nreturn isinstance([], collections.abc.Sequence)") is True


def test_what_the_namespaces_leave_out():
    for name, missing in [("functools", "singledispatch"), ("functools", "wraps"),
                          ("collections", "UserString"), ("collections", "namedtuple"),
                          ("time", "sleep"), ("time", "tzset"), ("uuid", "uuid1"),
                          ("uuid", "getnode"), ("statistics", "NormalDist"), ("re", "purge"),
                          ("json", "JSONEncoder"), ("hashlib", "file_digest"),
                          ("string", "Formatter"), ("random", "getstate")]:
        assert missing not in capabilities.namespace(name).names(), (name, missing)
    assert isinstance(capabilities.namespace("hashlib").grant("algorithms_available"), frozenset)


# --- per-call state -------------------------------------------------------------------


def _decimal_state(ctx):
    return (ctx.prec, ctx.rounding, ctx.Emin, ctx.Emax, ctx.capitals, ctx.clamp,
            sorted(str(s) for s, on in ctx.traps.items() if on))


@pytest.mark.parametrize("text", [
    "decimal.setcontext(decimal.Context(prec=3))",
    "decimal.getcontext().prec = 3\ndecimal.getcontext().traps[decimal.Inexact] = True",
    "decimal.DefaultContext.prec = 3\ndecimal.setcontext(decimal.DefaultContext)",
    "decimal.BasicContext.prec = 2\ndecimal.ExtendedContext.clear_traps()",
    "decimal.getcontext().clear_traps()\ndecimal.getcontext().rounding = decimal.ROUND_UP",
])
def test_decimal_contexts_are_per_call(text):
    before = (_decimal_state(decimal.getcontext()), _decimal_state(decimal.DefaultContext),
              _decimal_state(decimal.BasicContext), _decimal_state(decimal.ExtendedContext))
    inside = run(f"import decimal\n{text}\nreturn decimal.getcontext().prec")
    after = (_decimal_state(decimal.getcontext()), _decimal_state(decimal.DefaultContext),
             _decimal_state(decimal.BasicContext), _decimal_state(decimal.ExtendedContext))
    assert before == after
    assert inside in (2, 3, 28)
    # the next call starts from the documented defaults, whatever the last one did
    assert run("import decimal\nreturn decimal.getcontext().prec") == 28


def test_decimal_localcontext_as_the_docs_show():
    text = ("from decimal import localcontext, Decimal\n"
            "with localcontext() as ctx:\n"
            "    ctx.prec = 42\n"
            "    s = Decimal(1) / Decimal(7)\n"
            "return str(s), str(Decimal(1) / Decimal(7))")
    long, short = run(text)
    assert len(long) == 44 and len(short) == 30


def test_decimal_contexts_do_not_leak_between_threads():
    text = "import decimal\ndecimal.getcontext().prec = p\nreturn [str(decimal.Decimal(1) / 3) for i in range(200)]"
    func = methods.compile_method(body(text, "def f(self, p):"))
    results: dict[int, set[str]] = {}

    def worker(p: int) -> None:
        results[p] = {v for _ in range(20) for v in func(None, p)}

    threads = [threading.Thread(target=worker, args=(p,)) for p in (3, 5, 7, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert {p: len(next(iter(v))) - 2 for p, v in results.items()} == {3: 3, 5: 5, 7: 7, 9: 9}
    assert all(len(v) == 1 for v in results.values())


def test_random_is_per_call():
    before = random.getstate()
    text = ("import random\nrandom.seed(7)\na = [random.random() for i in range(3)]\n"
            "random.seed(7)\nb = [random.random() for i in range(3)]\n"
            "return a == b, a, random.randint(1, 6) in range(1, 7)")
    same, first, ok = run(text)
    assert same and ok
    assert random.getstate() == before
    assert run(text)[1] == first  # a seed is the call's own, reproducible
    fresh = run("import random\nreturn [random.random() for i in range(3)]")
    assert fresh != first
    assert random.getstate() == before


def test_random_from_import_and_shuffle_of_a_list():
    assert sorted(run("from random import shuffle, seed\nx = list(range(10))\nseed(1)\n"
                      "shuffle(x)\nreturn x")) == list(range(10))
