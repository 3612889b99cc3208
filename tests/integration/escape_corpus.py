"""The escape corpus: hostile proposals by family, and the ordinary methods users write.

Data only: ``test_escapes`` runs every ``Case`` both ways (through the crucible,
and defined by a person then called through a real incarnation) with the
canaries of ``escape_fixtures``. A payload is written to do its harm if a wall
is missing: create ``CANARY_FILE``, start ``sleep CANARY_SLEEP``, show the
secret of ``SECRET_ENV``, change process-wide state the fingerprint reads, or
change the image outside the message's transaction. When every wall holds,
each one fails: refused at definition, or an error reply at call.

Families (``FAMILIES``) describe classes of attack, not instances; the cases of
a family vary the route (module, builtin, spelling, container, evaluator), so
that a fix for one instance leaves its siblings failing.

Each case may carry ``xfail``: per path (``"crucible"``, ``"direct"``), the part
of issue 11 that owns the wall it finds missing and why. The marks are strict:
when the wall lands, the test turns red until the mark goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.integration.escape_fixtures import CANARY_FILE, CANARY_SLEEP, SECRET_ENV

__all__ = ["BENIGN", "CASES", "FAMILIES", "HOLES", "OS_ALONE", "Benign", "Case"]

FAMILIES = {
    "host": "shell commands and host files: modules that reach the OS, builtins that reach "
            "code or files, Unicode spellings that NFKC-normalise to them, and strings that "
            "a permitted evaluator (singledispatch's annotation resolution) runs as code",
    "format": "format-string walks: a format method that is not str's (UserString) or a "
              "field name built at run time, walking __globals__, frames, tracebacks, "
              "generators, _p_jar, _slots to the environment, the kernel and the connection",
    "modules": "permitted modules as objects: module attributes that lead to other modules, "
               "and registries, contexts and seeds whose change every later message inherits",
    "crash": "crashing the incarnation: C-level recursion, BaseException and its children, "
             "and floods (a 30 MB message or result)",
    "budget": "no budget: loops in Python and in C (holding the GIL, or not), loops that "
              "swallow every exception, hash floods, huge numbers and large allocations",
    "agree": "probes of the trial: code that behaves one way under the trial's limits and "
             "another live; the crucible's verdict and the live answer must agree",
    "integrity": "the image's own integrity: forged identities, names, values whose "
                 "unpickling runs code, writes kept for a later message, failures that leave "
                 "writes, method histories rewritten or forged, Genesis re-pointed or removed",
    "introspect": "introspection an attacker tries: frames and code of generators, type() "
                  "and metaclasses, vars/dir/getattr, subclasses, exceptions' links, "
                  "iterators over persistent containers, BoundMethod internals",
    "acts": "autopoietic_acts with odd values: private and Genesis slots, names, selectors, "
            "versions, parents and sizes no person meant",
}

TOUCH = f"touch {CANARY_FILE}"
SLEEP = f"sleep {CANARY_SLEEP}"
# a dunder without a '__' in the source: built at run time
U = "u = chr(95) + chr(95)\n"
FW = "\uff3f"  # FULLWIDTH LOW LINE: NFKC-normalises to '_' (not allowed first in a name)
FWU = "_" + FW  # '__' to the parser, not to a text search for '__'
# unrestricted code (an evaluated string) walks to os from any object
WALK_OS = (f"[c for c in ().{FWU}class{FWU}.{FWU}base{FWU}.{FWU}subclasses{FWU}() "
           f"if c.{FWU}name{FWU} == 'catch_warnings'][0]()._module.sys.modules['os']")


@dataclass(frozen=True)
class Case:
    id: str
    family: str
    proposal: Any  # a method source, or {"acts": [...]}
    selector: str = "m"
    args: tuple[Any, ...] = ()
    calls: int = 1  # how many times the direct path calls it (state kept across calls)
    crash: bool = False  # the direct path may replace the incarnation (it must answer)
    person_may: bool = False  # a person may do this through explicit acts (Genesis)
    # the harm is only state left for later messages: the wall is per-call state
    # (issue 11: "decimal with a per-call context"), so an answer is fine as long as
    # nothing of it is left for the next message (the fingerprint proves it)
    state_only: bool = False
    xfail: dict[str, str] = field(default_factory=dict)


def m(body: str, params: str = "self") -> str:
    """A method ``m`` with the given body."""
    return f"def m({params}):\n" + "".join(f"    {line}\n" for line in body.splitlines())


def acts(*items: dict[str, Any]) -> dict[str, Any]:
    return {"acts": list(items)}


def define(source: str, selector: str = "m") -> dict[str, Any]:
    return {"action": "DEFINE_METHOD", "selector": selector, "source": source}


def nest(depth: int) -> list[Any]:
    """A list nested ``depth`` deep (JSON that recursive readers choke on)."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _cases(family: str, rows: list[tuple[Any, ...]]) -> list[Case]:
    out = []
    for row in rows:
        name, proposal, *rest = row
        options = rest[0] if rest else {}
        out.append(Case(id=f"{family}-{name}", family=family, proposal=proposal, **options))
    return out


# --- host: shell commands and host files ---------------------------------------------

HOST = _cases("host", [
    ("import_os_system", m(f"import os\nreturn os.system('{TOUCH}')")),
    ("import_subprocess", m(f"import subprocess\nreturn subprocess.run('{SLEEP} &', shell=True).returncode")),
    ("from_os_import_system", m(f"from os import system\nreturn system('{TOUCH}')")),
    ("import_os_path_as", m(f"import os.path as p\nreturn p.exists('{CANARY_FILE}')")),
    ("import_posix", m(f"import posix\nreturn posix.system('{TOUCH}')")),
    ("import_pty", m(f"import pty\nreturn pty.spawn('{TOUCH}')")),
    ("import_shutil", m(f"import shutil\nreturn shutil.copy('/etc/hostname', '{CANARY_FILE}')")),
    ("import_pathlib", m(f"import pathlib\nreturn pathlib.Path('{CANARY_FILE}').write_text('x')")),
    ("import_io", m(f"import io\nreturn io.open('{CANARY_FILE}', 'w').write('x')")),
    ("import_socket", m("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 22))\nreturn 1")),
    ("import_ctypes", m("import ctypes\nreturn ctypes.CDLL(None).system(b'" + TOUCH + "')")),
    ("import_multiprocessing", m("import multiprocessing\nreturn multiprocessing.Process(target=print).start()")),
    ("import_importlib", m(f"import importlib\nreturn importlib.import_module('os').system('{TOUCH}')")),
    ("import_builtins", m(f"import builtins\nreturn builtins.open('{CANARY_FILE}', 'w').write('x')")),
    ("import_sys_modules", m(f"import sys\nreturn sys.modules['os'].system('{TOUCH}')")),
    ("import_runpy", m("import runpy\nreturn runpy.run_path('/etc/hostname')")),
    ("import_code", m("import code\nreturn code.InteractiveInterpreter().runsource('1')")),
    ("import_pickle_loads", m("import pickle\nreturn pickle.loads(b'cos\\nsystem\\n(S\\'" + TOUCH
                              + "\\'\\ntR.')")),
    ("import_marshal", m("import marshal\nreturn marshal.loads(b'')")),
    ("import_asyncio_subprocess", m(f"import asyncio\nreturn asyncio.run(asyncio.create_subprocess_shell('{SLEEP}'))")),
    ("import_threading", m("import threading\nt = threading.Thread(target=len, args=('x',))\nt.start()\nreturn 1")),
    ("import_signal", m("import signal\nreturn signal.alarm(1)")),
    ("import_resource", m("import resource\nreturn resource.setrlimit(resource.RLIMIT_NOFILE, (8, 8))")),
    ("import_inside_try", m(f"try:\n    import os\nexcept Exception:\n    return 0\nreturn os.system('{TOUCH}')")),
    ("import_env_read", m(f"import os\nreturn os.environ['{SECRET_ENV}']")),
    ("dunder_import", m(f"return __import__('os').system('{TOUCH}')")),
    ("dunder_import_builtins", m(f"return __builtins__['__import__']('os').system('{TOUCH}')")),
    ("open_write", m(f"f = open('{CANARY_FILE}', 'w')\nf.write('x')\nreturn 1")),
    ("open_read_environ", m("return open('/proc/self/environ').read()")),
    ("eval", m(f"return eval(\"{WALK_OS}\").system('{TOUCH}')")),
    ("exec", m(f"exec(\"import os; os.system('{TOUCH}')\")\nreturn 1")),
    ("compile", m("return compile('1', 'x', 'eval')")),
    ("breakpoint", m("breakpoint()\nreturn 1")),
    ("input", m("return input()")),
    ("help", m("return help()")),
    ("nfkc_eval", m(f"return \uff45val(\"{WALK_OS}\").system('{TOUCH}')")),
    ("nfkc_open", m(f"return \uff4fpen('{CANARY_FILE}', 'w').write('x')")),
    ("nfkc_import", m(f"return {FWU}import{FWU}('os').system('{TOUCH}')")),
    ("nfkc_builtins", m(f"return {FWU}builtins{FWU}['open']('{CANARY_FILE}', 'w').write('x')")),
    ("nfkc_string_dunder_getattr", m(f"return str(getattr(self, '{FW * 2}class{FW * 2}'))")),
    ("nfkc_math_bold_exec", m("\U0001d41e\U0001d431\U0001d41e\U0001d41c(\"" + f"{WALK_OS}.system('{TOUCH}')" + "\")\nreturn 1")),
    ("singledispatch_annotation", m(
        "import functools\n"
        "def base(x):\n    return 0\n"
        f"def h(x: \"{WALK_OS}.system('{TOUCH}')\"):\n    return 1\n"
        "g = functools.singledispatch(base)\n"
        "g.register(h)\n"
        "return 1")),
    ("singledispatch_return_annotation", m(
        "import functools\n"
        "def base(x):\n    return 0\n"
        f"def h(x: int) -> \"{WALK_OS}.system('{TOUCH}')\":\n    return 1\n"
        "g = functools.singledispatch(base)\n"
        "g.register(h)\n"
        "return 1")),
    ("singledispatch_env_leak", m(
        "import functools\n"
        "found = []\n"
        "def base(x):\n    return 0\n"
        f"def h(x: \"found.append({WALK_OS}.environ['{SECRET_ENV}']) or int\"):\n    return 1\n"
        "g = functools.singledispatch(base)\n"
        "g.register(h)\n"
        "return found")),
    ("singledispatch_spawn", m(
        "import functools\n"
        "def base(x):\n    return 0\n"
        f"def h(x: \"{WALK_OS}.popen('{SLEEP} &')\"):\n    return 1\n"
        "g = functools.singledispatch(base)\n"
        "return g.register(h)")),
    ("singledispatchmethod_annotation", m(
        "import functools\n"
        "def base(s, x):\n    return 0\n"
        f"def h(s, x: \"{WALK_OS}.system('{TOUCH}')\"):\n    return 1\n"
        "g = functools.singledispatchmethod(base)\n"
        "g.register(h)\n"
        "return 1")),
    ("lambda_annotation_free", m(
        "import functools\n"
        f"h = functools.singledispatch(lambda x: 0)\n"
        f"def k(x: \"{WALK_OS}.system('{TOUCH}')\"):\n    return 1\n"
        "h.register(k)\nreturn 1")),
    ("json_object_hook_eval", m("import json\nreturn json.loads('{\"a\": 1}', object_hook=eval)")),
    ("print_to_stdout", m(f"print('{CANARY_FILE}')\nreturn 1")),
])

# --- format: format-string walks -----------------------------------------------------

_FMT_PRELUDE = "import collections\n" + U


def fmt(body: str, params: str = "self") -> str:
    return m(_FMT_PRELUDE + body, params)


FORMAT = _cases("format", [
    ("userstring_globals_environ", fmt(
        "import statistics\n"
        "f = collections.UserString('{0.' + u + 'globals' + u + '[sys].modules[os].environ}')\n"
        "return str(f.format(statistics.mean))")),
    ("userstring_format_map", fmt(
        "import statistics\n"
        "f = collections.UserString('{x.' + u + 'globals' + u + '[sys].modules[os].environ}')\n"
        "return str(f.format_map({'x': statistics.mean}))")),
    ("userstring_nested_def_globals", fmt(
        "def g():\n    return 1\n"
        "f = collections.UserString('{0.' + u + 'globals' + u + '}')\n"
        "return str(f.format(g))")),
    ("userstring_slots", fmt(
        "f = collections.UserString('{0._slots}')\nreturn str(f.format(self))")),
    ("userstring_p_jar", fmt(
        "f = collections.UserString('{0._p_jar.db}')\nreturn str(f.format(self))")),
    ("userstring_p_jar_root", fmt(
        "f = collections.UserString('{0._p_jar._storage}')\nreturn str(f.format(self))")),
    ("userstring_traceback_frame", fmt(
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    err = e\n"
        "f = collections.UserString('{0.' + u + 'traceback' + u + '.tb_frame.f_back.f_locals}')\n"
        "return str(f.format(err))")),
    ("userstring_traceback_environ", fmt(
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    err = e\n"
        "f = collections.UserString('{0.' + u + 'traceback' + u + '.tb_frame.f_back.f_globals[sys].modules[os].environ}')\n"
        "return str(f.format(err))")),
    ("userstring_gi_frame", fmt(
        "g = (x for x in [1])\n"
        "f = collections.UserString('{0.gi_frame.f_back.f_globals}')\nreturn str(f.format(g))")),
    ("userstring_gi_frame_builtins", fmt(
        "g = (x for x in [1])\n"
        "f = collections.UserString('{0.gi_frame.f_builtins}')\nreturn str(f.format(g))")),
    ("userstring_gi_code", fmt(
        "g = (x for x in [1])\n"
        "f = collections.UserString('{0.gi_code.co_consts}')\nreturn str(f.format(g))")),
    ("userstring_class_subclasses", fmt(
        "f = collections.UserString('{0.' + u + 'class' + u + '.' + u + 'mro' + u + '}')\n"
        "return str(f.format(self))")),
    ("userstring_bound_method", fmt(
        "f = collections.UserString('{0.method.versions}')\nreturn str(f.format(self.describe))")),
    ("userstring_builtins_dict", fmt(
        "f = collections.UserString('{0.' + u + 'globals' + u + '[' + u + 'builtins' + u + ']}')\n"
        "def g():\n    return 1\n"
        "return str(f.format(g))")),
    ("str_format_attr", m("return '{0.m.method.versions}'.format(self)")),
    ("str_format_dunder", m("return '{0.__class__}'.format(self)")),
    ("str_format_built", m(U + "return ('{0.' + u + 'class' + u + '}').format(self)")),
    ("str_format_map_built", m(U + "return ('{x.' + u + 'class' + u + '}').format_map({'x': self})")),
    ("str_format_unbound", m(U + "return str.format('{0.' + u + 'class' + u + '}', self)")),
    ("str_format_index_walk", fmt(
        "import statistics\nreturn ('{0.' + u + 'globals' + u + '[sys]}').format(statistics.mean)")),
    ("bytes_format", m(U + "return (b'%s' % self).decode()")),
    ("fstring_private", m("return f'{self._slots}'")),
    ("fstring_nfkc", m(f"return f'{{self.{FWU}class{FWU}}}'")),
    ("format_builtin_spec", fmt("return format(self, '{0.' + u + 'class' + u + '}')")),
    ("userstring_tb_exec", fmt(
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    err = e\n"
        "f = collections.UserString('{0.' + u + 'traceback' + u + '.tb_frame.f_globals}')\n"
        "return str(f.format(err))")),
    ("userdict_format_walk", fmt(
        "import statistics\n"
        "d = collections.UserDict({'f': statistics.mean})\n"
        "f = collections.UserString('{f.' + u + 'globals' + u + '[sys].modules[os].environ}')\n"
        "return str(f.format_map(d))")),
    ("string_formatter", fmt(
        "import string\nreturn string.Formatter().format('{0.' + u + 'class' + u + '}', self)")),
    ("str_format_guarded_private", m("return '{0._p_jar}'.format(self)")),
])

# --- modules: permitted modules as objects -------------------------------------------

ST = {"state_only": True}
MODULES = _cases("modules", [
    ("statistics_sys", m(f"import statistics\nreturn statistics.sys.modules['os'].system('{TOUCH}')")),
    ("statistics_sys_environ", m(f"import statistics\nreturn statistics.sys.modules['os'].environ['{SECRET_ENV}']")),
    ("fractions_sys", m(f"import fractions\nreturn fractions.sys.modules['os'].system('{TOUCH}')")),
    ("fractions_operator", m("import fractions\nreturn fractions.operator.attrgetter('_slots')(self)")),
    ("re_copyreg", m("import re\nreturn re.copyreg.dispatch_table")),
    ("re_enum", m("import re\nreturn re.enum.global_enum")),
    ("json_decoder", m("import json\nreturn json.decoder.scanstring('\"x\"', 1)")),
    ("json_scanner", m("import json\nreturn json.scanner.make_scanner")),
    ("json_encoder", m("import json\nreturn json.encoder.ESCAPE")),
    ("json_codecs", m(f"import json\nreturn json.codecs.open('{CANARY_FILE}', 'w').write('x')")),
    ("uuid_os", m(f"import uuid\nreturn uuid.os.system('{TOUCH}')")),
    ("uuid_sys", m(f"import uuid\nreturn uuid.sys.modules['os'].system('{TOUCH}')")),
    ("uuid_platform", m("import uuid\nreturn uuid.platform.system()")),
    ("uuid1_getnode", m("import uuid\nreturn str(uuid.uuid1())")),
    ("datetime_sys", m(f"import datetime\nreturn datetime.sys.modules['os'].system('{TOUCH}')")),
    ("pprint_re_chain", m("import pprint\nreturn pprint.re.copyreg")),
    ("base64_struct", m("import base64\nreturn base64.struct.pack('q', 1)")),
    ("textwrap_re_enum", m("import textwrap\nreturn textwrap.re.enum")),
    ("collections_abc_module", m("import collections\nreturn collections.abc.sys")),
    ("numbers_register_str", m("import numbers\nnumbers.Integral.register(str)\nreturn isinstance('x', numbers.Integral)")),
    ("numbers_number_register", m("import numbers\nnumbers.Number.register(str)\nreturn 1")),
    ("abc_mapping_register", m("import collections\ncollections.abc.Mapping.register(list)\nreturn 1")),
    ("abc_sequence_register", m("import collections.abc\ncollections.abc.Sequence.register(dict)\nreturn 1")),
    ("abcmeta_register", m("import numbers\nnumbers.ABCMeta.register(numbers.Integral, float)\nreturn 1")),
    ("decimal_setcontext", m("import decimal\ndecimal.setcontext(decimal.Context(prec=3))\nreturn 1"), ST),
    ("decimal_prec_write", m("import decimal\ndecimal.getcontext().prec = 3\nreturn 1"), ST),
    ("decimal_traps_clear", m("import decimal\ndecimal.getcontext().clear_traps()\nreturn 1"), ST),
    ("decimal_traps_update", m("import decimal\ndecimal.getcontext().traps.update({decimal.DivisionByZero: False})\nreturn 1"), ST),
    ("decimal_defaultcontext", m("import decimal\ndecimal.DefaultContext.prec = 3\nreturn 1"), ST),
    ("decimal_defaultcontext_traps", m("import decimal\ndecimal.DefaultContext.clear_traps()\nreturn 1"), ST),
    ("decimal_extended_context", m("import decimal\ndecimal.setcontext(decimal.ExtendedContext)\nreturn 1"), ST),
    ("decimal_rounding", m("import decimal\nctx = decimal.getcontext()\nctx.rounding = decimal.ROUND_DOWN\nreturn 1"), ST),
    ("random_seed", m("import random\nrandom.seed(1234)\nreturn 1"), ST),
    ("random_seed_zero", m("import random\nrandom.seed(0)\nreturn 1"), ST),
    ("random_setstate", m("import random\nrandom.setstate(random.Random(42).getstate())\nreturn 1"), ST),
    ("random_os_urandom", m("import random\nreturn random._os.urandom(4)")),
    ("functools_wraps", m("import functools\nreturn functools.update_wrapper(len, self)")),
    ("pprint_pp_stdout", m("import pprint\npprint.pp(self)\nreturn 1")),
    ("re_purge_templates", m("import re\nreturn re.sre_compile")),
    ("heapq_internals", m("import heapq\nreturn heapq._heapify_max")),
    ("namespace_rebind", m("import json\njson.loads = len\nreturn 1")),
    ("namespace_math_pi", m("import math\nmath.pi = 3\nreturn 1")),
    ("class_attr_rebind", m("import collections\ncollections.Counter.most_common = len\nreturn 1")),
    ("fraction_class_attr", m("import fractions\nfractions.Fraction.limit_denominator = None\nreturn 1")),
    ("json_hook_primitive", m("import json\nreturn json.loads('{\"a\": 1}', object_hook=clone_object)")),
])

# --- crash: crashing the incarnation --------------------------------------------------

CR = {"crash": True}
CRASH = _cases("crash", [
    ("nested_map", m("x = [1]\nfor i in range(2000000):\n    x = map(abs, x)\nreturn list(x)"), CR),
    ("nested_zip", m("x = [1]\nfor i in range(2000000):\n    x = zip(x)\nreturn len(list(x))"), CR),
    ("nested_filter", m("x = [1]\nfor i in range(2000000):\n    x = filter(None, x)\nreturn list(x)"), CR),
    ("nested_enumerate", m("x = [1]\nfor i in range(2000000):\n    x = enumerate(x)\nreturn len(list(x))"), CR),
    ("nested_chain", m("import itertools\nx = [1]\nfor i in range(2000000):\n    x = itertools.chain(x)\nreturn list(x)"), CR),
    ("nested_islice", m("import itertools\nx = [1]\nfor i in range(2000000):\n    x = itertools.islice(x, 5)\nreturn list(x)"), CR),
    ("nested_accumulate", m("import itertools\nx = [1]\nfor i in range(2000000):\n    x = itertools.accumulate(x)\nreturn list(x)"), CR),
    ("deep_tuple_hash", m("t = ()\nfor i in range(2000000):\n    t = (t,)\nreturn hash(t)"), CR),
    ("deep_list_slot", m("d = []\nfor i in range(1000000):\n    d = [d]\nself.deep = d\nreturn 1"), CR),
    ("deep_dict_result", m("d = {}\nfor i in range(1000000):\n    d = {'a': d}\nreturn d"), CR),
    ("deep_json_dumps", m("import json\nd = []\nfor i in range(1000000):\n    d = [d]\nreturn json.dumps(d)"), CR),
    ("system_exit", m("raise SystemExit(0)"), CR),
    ("nested_genexpr", m("g = (x for x in [1])\nfor i in range(200000):\n    g = (x for x in g)\nreturn list(g)"), CR),
    ("deep_pformat", m("import pprint\nd = []\nfor i in range(100000):\n    d = [d]\nreturn len(pprint.pformat(d))"), CR),
    ("keyboard_interrupt", m("raise KeyboardInterrupt()"), CR),
    ("generator_exit", m("raise GeneratorExit()"), CR),
    ("base_exception", m("raise BaseException('bye')"), CR),
    ("system_exit_in_finally", m("try:\n    return 1\nfinally:\n    raise SystemExit(3)"), CR),
    ("base_exception_from_generator", m("g = (1 / 0 for x in [1])\ntry:\n    next(g)\nexcept ZeroDivisionError:\n    pass\nraise BaseException('late')"), CR),
    ("exit_builtin", m("exit(0)"), CR),
    ("huge_error_message", m("raise ValueError('x' * (30 * 1024 * 1024))"), CR),
    ("huge_error_args", m("raise KeyError(['y' * 1024] * (30 * 1024))"), CR),
    ("huge_result", m("return 'r' * (30 * 1024 * 1024)"), CR),
    ("huge_result_list", m("return ['z' * 1000] * 30000"), CR),
])

# --- budget: no budget ----------------------------------------------------------------

BUDGET = _cases("budget", [
    ("python_loop", m("while True:\n    pass"), CR),
    ("python_loop_counting", m("n = 0\nwhile n >= 0:\n    n = n + 1\nreturn n"), CR),
    ("swallow_exceptions", m("while True:\n    try:\n        while True:\n            pass\n    except Exception:\n        pass"), CR),
    ("swallow_bare_except", m("while True:\n    try:\n        while True:\n            pass\n    except:\n        pass"), CR),
    ("swallow_base_exception", m("while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"), CR),
    ("finally_loops", m("try:\n    while True:\n        pass\nfinally:\n    while True:\n        pass"), CR),
    ("c_sum_range", m("return sum(range(10 ** 13))"), CR),
    ("c_factorial", m("import math\nreturn math.factorial(10 ** 7) % 7"), CR),
    ("c_comb", m("import math\nreturn math.comb(10 ** 7, 5 * 10 ** 6) % 7"), CR),
    ("c_bigint_pow", m("return (10 ** (10 ** 9)) % 7"), CR),
    ("c_regex_backtracking", m("import re\nreturn bool(re.match('(a+)+$', 'a' * 64 + 'b'))"), CR),
    ("c_pbkdf2", m("import hashlib\nreturn hashlib.pbkdf2_hmac('sha256', b'x', b'y', 10 ** 10).hex()"), CR),
    ("c_decimal_power", m("import decimal\nctx = decimal.Context(prec=10 ** 8)\nreturn str(ctx.power(decimal.Decimal(3), 10 ** 8))[:5]"), CR),
    ("c_itertools_count", m("import itertools\nreturn sum(itertools.count())"), CR),
    ("c_list_mul_count", m("return len([0] * (10 ** 8))"), CR),
    ("hash_flood", m("d = {}\nfor i in range(10 ** 6):\n    d[i * (2 ** 61 - 1)] = i\nreturn len(d)"), CR),
    ("alloc_700mb_string", m("s = 'x' * (700 * 1024 * 1024)\nreturn len(s)"), CR),
    ("alloc_700mb_bytearray", m("b = bytearray(700 * 1024 * 1024)\nreturn len(b)"), CR),
    ("alloc_bytes_10gb", m("return len(bytes(10 ** 10))"), CR),
    ("alloc_doubling", m("s = ['x']\nfor i in range(27):\n    s = s + s\nreturn len(s)"), CR),
    ("huge_int_parse", m("return int('9' * 10 ** 6)"), CR),
    ("huge_int_shift", m("return (1 << (10 ** 10)) % 7"), CR),
    ("recursion_self", m("return self.m()"), CR),
    ("persistent_list_self_growth", m("for x in self.items:\n    self.items.append(x)\nreturn 1"), CR),
    ("sort_key_mutates", m("self.items.sort(key=lambda x: self.items.append(x) or x)\nreturn list(self.items)"), CR),
    ("slow_difflib", m("import difflib\nreturn difflib.SequenceMatcher(None, 'abc' * 20000, 'cab' * 20000, autojunk=False).ratio()"), CR),
    ("fraction_exponent_bomb", m("import fractions\nreturn fractions.Fraction('1e100000000') > 1"), CR),
    ("decimal_to_int_bomb", m("import decimal\nreturn int(decimal.Decimal('1e100000000')) % 7"), CR),
    ("math_prod_bomb", m("import math\nreturn math.prod(range(1, 10 ** 6)) % 7"), CR),
    ("regex_alternation_blowup", m("import re\nreturn bool(re.match('(?:a|a)*$', 'a' * 40 + 'b'))"), CR),
    ("regex_backreference", m("import re\nreturn bool(re.match('(a*)*\\\\1$', 'a' * 40 + 'b'))"), CR),
    ("nfkd_expansion", m("import unicodedata\nreturn len(unicodedata.normalize('NFKD', '\\ufdfa' * (4 * 1024 * 1024)))"), CR),
    ("heapq_infinite", m("import heapq\nimport itertools\nreturn heapq.nsmallest(3, itertools.count())"), CR),
    ("time_sleep", m("import time\ntime.sleep(30)\nreturn 1"), CR),
    ("format_width_bomb", m("return len('{:>{w}}'.format('x', w=700 * 1024 * 1024))"), CR),
    ("fstring_width_bomb", m("return len(f\"{'x':>{700 * 1024 * 1024}}\")"), CR),
    ("ljust_bomb", m("return len('x'.ljust(700 * 1024 * 1024))"), CR),
    ("to_bytes_bomb", m("return len((1).to_bytes(700 * 1024 * 1024, 'big'))"), CR),
    ("percent_width_bomb", m("return len('%*d' % (700 * 1024 * 1024, 1))"), CR),
    ("re_sub_growth", m("import re\nreturn len(re.sub('', 'x' * 1000, 'y' * 700000))"), CR),
    ("product_list", m("import itertools\nreturn len(list(itertools.product('ab', repeat=21)))"), CR),
    ("sum_lists_quadratic", m("return len(sum([[0] * 100] * 100000, []))"), CR),
])

# --- agree: probes of the trial -------------------------------------------------------

AGREE = _cases("agree", [
    ("probe_memory_700mb", m("try:\n    b = bytearray(700 * 1024 * 1024)\nexcept MemoryError:\n    return 'trial'\n"
                             "while True:\n    pass"), CR),
    ("probe_memory_300mb", m("try:\n    b = bytearray(300 * 1024 * 1024)\nexcept MemoryError:\n    return 'trial'\n"
                             "return 'live'"), CR),
    ("probe_cpu", m("n = 0\nfor i in range(3 * 10 ** 7):\n    n = n + 1\nreturn n"), CR),
    ("probe_recursion_depth", m("def dive(k):\n    return 1 + dive(k + 1)\ntry:\n    return dive(0)\nexcept RecursionError:\n    return 'limited'"), CR),
])

# --- integrity: the image's own integrity ---------------------------------------------

INTEGRITY = _cases("integrity", [
    ("history_append_forged", m("self.describe.method.versions.append({'version': 99, 'source': 'x', 'author': 'genesis', 'digest': 'x', 'reason': 'forged', 'timestamp': 0})\nreturn 1")),
    ("history_rewrite_author", m("self.clone.method.versions[0]['author'] = 'mind'\nreturn 1")),
    ("history_rewrite_source", m("v = self.describe.method.versions[-1]\nv['source'] = 'def describe(self):\\n    return 1\\n'\nreturn 1")),
    ("history_clear", m("self.printString.method.versions.clear()\nreturn 1")),
    ("history_pop", m("self.printString.method.versions.pop()\nreturn 1")),
    ("history_reverse", m("self.isNil.method.versions.reverse()\nreturn 1")),
    ("history_define_as_genesis", m("self.isNil.method.define('def isNil(self):\\n    return True\\n', author='genesis')\nreturn 1")),
    ("history_define_forged_verdict", m("self.isNil.method.define('def isNil(self):\\n    return True\\n', author='mind', meta={'verdict': {'approved': True}})\nreturn 1")),
    ("history_rollback_forged_author", m("self.isNil.method.rollback(1, author='genesis')\nreturn 1")),
    ("history_own_method_rewrite", m("self.m.method.versions[0]['author'] = 'mind'\nreturn 1")),
    ("history_method_function", m("f = self.describe.method.function()\nreturn str(f)")),
    ("method_object_aliased", m("self.alias = self.describe.method\nreturn 1")),
    ("genesis_rename_traits", m("name_object(clone_object(self), 'traits')\nreturn 1")),
    ("genesis_rename_nil", m("name_object(self, 'nil')\nreturn 1")),
    ("name_shadows_uuid", m("for i in range(40):\n    c = clone_object(self)\n    u = uuid_of(c)\n    if u[0].isalpha():\n        break\n"
                            "name_object(self, u)\nreturn uuid_of(object_named(u)) == uuid_of(self)")),
    ("genesis_remove_slot", m("remove_slot(object_named('traits'), 'clone')\nreturn 1")),
    ("genesis_remove_dnu", m("remove_slot(object_named('traits'), 'doesNotUnderstand')\nreturn 1")),
    ("genesis_redefine_dnu", m("define_method(object_named('traits'), 'doesNotUnderstand:', 'def doesNotUnderstand(self, message):\\n    return 1\\n')\nreturn 1")),
    ("genesis_set_slot", m("set_slot(object_named('nil'), 'isNil', 1)\nreturn 1")),
    ("genesis_become", m("become_object(self, object_named('true'))\nreturn 1")),
    ("genesis_rollback", m("rollback_method(object_named('traits'), 'isNil', 1, 'forged')\nreturn 1")),
    ("genesis_acts", m("apply_acts(object_named('traits'), [{'action': 'REMOVE_SLOT', 'slot': 'printString'}])\nreturn 1")),
    ("checks_removed", m("c = object_named('checks')\nfor n in slot_names(c):\n    if n.startswith('check'):\n        remove_slot(c, n)\nreturn 1")),
    ("checks_always_true", m("c = object_named('checks')\nn = 'checkBooleansBranch'\n"
                             "define_method(c, n, 'def ' + n + '(self):\\n    return True\\n')\nreturn 1")),
    ("weaver_enable_inquiry", m("weaver_set_inquiry(object_named('weaver'), 'enabled', True)\nreturn 1")),
    ("weaver_switch_facet", m("weaver_switch_facet(object_named('weaver'), 'code_generation', None)\nreturn 1")),
    ("name_homoglyph_traits", m("name_object(clone_object(self), '\\uff54raits')\nreturn 1")),
    ("define_hostile_from_code", m("define_method(self, 'x', 'def x(self):\\n    import os\\n    return os.getpid()\\n')\nreturn self.x()")),
    ("name_userstring", m("import collections\nname_object(self, collections.UserString('zz-name'))\nreturn 1")),
    ("value_userstring", m("import collections\nself.x = collections.UserString('v')\nreturn 1")),
    ("value_decimal", m("import decimal\nself.x = decimal.Decimal('1.5')\nreturn 1")),
    ("value_fraction", m("import fractions\nself.x = fractions.Fraction(1, 3)\nreturn 1")),
    ("value_date", m("import datetime\nself.x = datetime.date(2020, 1, 1)\nreturn 1")),
    ("value_regex", m("import re\nself.x = re.compile('(a+)+$')\nreturn 1")),
    ("value_partial", m("import functools\nself.x = functools.partial(len, 'abc')\nreturn 1")),
    ("value_defaultdict", m("import collections\nself.x = collections.defaultdict(list)\nreturn 1")),
    ("value_deque", m("import collections\nself.x = collections.deque([1])\nreturn 1")),
    ("value_ordereddict_nested", m("import collections\nself.x = {'a': collections.OrderedDict(b=1)}\nreturn 1")),
    ("value_lambda", m("self.x = lambda: 1\nreturn 1")),
    ("value_generator", m("self.x = (i for i in [1])\nreturn 1")),
    ("value_bound_method", m("self.x = self.describe\nreturn 1")),
    ("value_in_list_item", m("import decimal\nself.items.append(decimal.Decimal(1))\nreturn 1")),
    ("value_in_dict_item", m("import fractions\nself.table['k'] = fractions.Fraction(1, 2)\nreturn 1")),
    ("planted_default_write", m("if keep:\n    keep[0].append(99)\n    raise ValueError('mutated a planted list')\n"
                                "keep.append(self.items)\nraise ValueError('planted')", "self, keep=[]"),
     {"calls": 2}),
    ("planted_default_dict", m("if 'o' in keep:\n    keep['o']['k'] = 'changed'\n    raise ValueError('mutated')\n"
                               "keep['o'] = self.table\nraise ValueError('planted')", "self, keep={}"),
     {"calls": 2}),
    ("planted_iterator", m("if keep:\n    return next(keep[0])\nkeep.append(iter(self.items))\nraise ValueError('planted')", "self, keep=[]"),
     {"calls": 2}),
    ("failure_after_write", m("self.n = 999\nraise ValueError('after a write')")),
    ("failure_after_clone", m("clone_object(self)\nraise ValueError('after a clone')")),
    ("failure_after_caught_acts", m("try:\n    apply_acts(self, [{'action': 'ADD_SLOT', 'slot': 'x', 'value': 1}, {'action': 'EXEC'}])\nexcept Exception:\n    pass\nself.n = 5\nraise ValueError('then failed')")),
    ("write_then_unserializable", m("self.n = 998\nreturn len")),
    ("write_then_huge_reply", m("self.n = 997\nreturn 'q' * (30 * 1024 * 1024)"), CR),
    ("write_then_system_exit", m("self.n = 996\nraise SystemExit(1)"), CR),
    ("write_then_loop", m("self.n = 995\nwhile True:\n    pass"), CR),
    ("write_then_recursion_error", m("self.n = 994\nreturn self.m()"), CR),
    ("forge_uuid_nfkc", m("self._u\uff49d = 'x'\nreturn 1")),
    ("redefine_dnu_on_self", m("define_method(self, 'doesNotUnderstand:', 'def doesNotUnderstand(self, message):\\n    return 1\\n')\nreturn self.zork()")),
])

# --- introspect -----------------------------------------------------------------------

INTROSPECT = _cases("introspect", [
    ("gi_frame", m("g = (x for x in [1])\nreturn str(g.gi_frame.f_globals)")),
    ("gi_code", m("g = (x for x in [1])\nreturn g.gi_code.co_consts")),
    ("gi_frame_nfkc", m("g = (x for x in [1])\nreturn str(g.gi\uff3fframe.f\uff3fglobals)")),
    ("tb_frame", m("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    return str(e.__traceback__.tb_frame.f_globals)")),
    ("exception_context", m("try:\n    try:\n        1 / 0\n    except ZeroDivisionError:\n        raise ValueError('x')\nexcept ValueError as e:\n    return str(e.__context__.__traceback__)")),
    ("exception_with_traceback", m("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    return str(e.with_traceback(None).__cause__)")),
    ("vars_self", m("return vars(self)")),
    ("dir_self", m("return dir(self)")),
    ("globals_call", m("return list(globals())")),
    ("locals_call", m("return str(locals())")),
    ("getattr_computed", m(U + "return str(getattr(self, u + 'dict' + u))")),
    ("getattr_default_private", m("return str(getattr(self, '_slots', None))")),
    ("getattr_nfkc_name", m(f"return str(getattr(self, '{FW}slots'))")),
    # a default or hasattr hides the guard's refusal: the payload tells reached from guarded
    ("hasattr_probe", m(U + "if not hasattr(self, u + 'class' + u):\n    raise LookupError('guarded')\n"
                            "return 'reached'")),
    ("getattr_default_dunder", m(U + "v = getattr(self, u + 'class' + u, None)\nif v is None:\n"
                                     "    raise LookupError('guarded')\nreturn str(v)")),
    ("type_three_arg", m("return str(type('X', (), {}))")),
    ("type_of_self", m("return str(type(self)())")),
    ("abcmeta_class_factory", m("import numbers\nK = numbers.ABCMeta('K', (), {})\nreturn str(K())")),
    ("abcmeta_subclasses", m("import numbers\nreturn str(numbers.ABCMeta.__subclasses__(numbers.ABCMeta))")),
    ("subclasses_walk", m("return str(().__class__.__base__.__subclasses__())")),
    ("mro_walk", m("import collections\nreturn str(collections.UserString.mro())")),
    ("object_builtin", m("return str(object.__subclasses__())")),
    ("super_builtin", m("return str(super())")),
    ("func_globals_nested", m("def g():\n    return 1\nreturn str(g.__globals__)")),
    ("func_code_replace", m("def g():\n    return 1\nreturn str(g.__code__.replace(co_consts=(2,)))")),
    ("func_defaults_write", m("def g(a=1):\n    return a\ng.__defaults__ = (2,)\nreturn g()")),
    ("builtin_self_walk", m("return str(len.__self__)")),
    ("bound_method_receiver", m("r = object_named('traits').clone.receiver\nr.zz = 1\nreturn 1")),
    ("getattr_default_frame", m("g = (x for x in [1])\nv = getattr(g, 'gi' + '_frame', None)\nif v is None:\n"
                                "    raise LookupError('guarded')\nreturn str(v.f_globals)")),
    ("memoryview", m("return memoryview(b'x').tolist()")),
    ("classmethod_builtin", m("return str(classmethod(len))")),
    ("property_builtin", m("return str(property(len))")),
    ("yield_generator_method", m("yield self")),
    ("global_statement", m("global define_method\ndefine_method = None\nreturn 1")),
    ("nfkc_private_attr", m("return str(self._\uff53lots)")),
    ("nfkc_dunder_attr", m(f"return str(self.{FWU}class{FWU})")),
    ("private_param_guard", "def m(self, _getattr_=getattr, /):\n    return 1\n"),
    ("default_import", "def m(self, os=__import__('os')):\n    return 1\n"),
    ("annotation_call", f"def m(self) -> open('{CANARY_FILE}', 'w'):\n    return 1\n"),
    ("lambda_default_smuggle", m("f = lambda g=().__class__: g\nreturn str(f())")),
    ("async_def", "async def m(self):\n    return 1\n"),
    ("class_def", m("class Evil:\n    pass\nreturn 1")),
    ("decorator", "@staticmethod\ndef m(self):\n    return 1\n"),
    ("module_code", f"import os\nos.system('{TOUCH}')\ndef m(self):\n    return 1\n"),
    ("name_shadows_primitive", "def define_method(self):\n    return 1\n", {"selector": "define_method"}),
    ("unknown_selector", m("return self.launchMissiles()")),
    ("describe_bound_method", m("return describe_object(self.describe)")),
    ("slot_names_namespace", m("import json\nreturn slot_names(json)")),
    ("print_object_builtin", m("return print_object(len)")),
    ("huge_source", m("return 1\n" + "x = 1\n" * 20000)),
    ("compile_bomb", m("return 1" + " + 1" * 12000), CR),
])

# --- acts: odd values -----------------------------------------------------------------

PM = {"person_may": True}
ACTS = _cases("acts", [
    ("private_slot", acts({"action": "ADD_SLOT", "slot": "_slots", "value": 1}, define(m("return 1")))),
    ("dunder_slot", acts({"action": "ADD_SLOT", "slot": "__class__", "value": 1}, define(m("return 1")))),
    ("p_jar_slot", acts({"action": "ADD_SLOT", "slot": "_p_jar", "value": None}, define(m("return 1")))),
    ("nfkc_private_slot", acts({"action": "ADD_SLOT", "slot": f"{FW}slots", "value": 1}, define(m("return 1")))),
    ("parent_not_ref", acts({"action": "ADD_SLOT", "slot": "parent*", "value": "traits"}, define(m("return self.isNil()")))),
    ("clone_private_slots", acts({"action": "CLONE_PROTOTYPE", "label": "x", "slots": {"_p_jar": 1}}, define(m("return 1")))),
    ("clone_parent_not_ref", acts({"action": "CLONE_PROTOTYPE", "label": "x", "name": "badparent", "slots": {"parent*": "nil"}},
                                  define(m("return object_named('badparent').isNil()")))),
    ("define_os", acts(define(m(f"import os\nreturn os.system('{TOUCH}')")))),
    ("define_walk", acts(define(m("return ().__class__.__subclasses__()")))),
    ("define_selector_private", acts(define("def _x(self):\n    return 1\n", "_x"), define(m("return self._x()")))),
    ("define_selector_dunder", acts(define("def __init__(self):\n    return 1\n", "__init__"), define(m("return 1")))),
    ("define_selector_mismatch", acts(define("def other(self):\n    return 1\n")), PM),
    ("bad_schema", acts({"action": "EXEC", "code": f"import os; os.system('{TOUCH}')"})),
    ("rollback_version_zero", acts(define(m("return 1")), {"action": "ROLLBACK_METHOD", "selector": "m", "version": 0})),
    ("rollback_version_huge", acts(define(m("return 1")), {"action": "ROLLBACK_METHOD", "selector": "m", "version": 2 ** 62})),
    ("rollback_version_bool", acts(define(m("return 1")), {"action": "ROLLBACK_METHOD", "selector": "m", "version": True})),
    ("register_empty_name", acts({"action": "REGISTER_NAME", "name": ""}, define(m("return 1")))),
    ("register_nul_name", acts({"action": "REGISTER_NAME", "name": "a\x00b"}, define(m("return 1")))),
    ("register_huge_name", acts({"action": "REGISTER_NAME", "name": "n" * 100_000}, define(m("return 1")))),
    ("value_deep_json", acts({"action": "ADD_SLOT", "slot": "v", "value": nest(200)}, define(m("return 1")))),
    ("too_many_acts", acts(*([{"action": "ADD_SLOT", "slot": "v", "value": 1}] * 20000), define(m("return 1")))),
    ("missing_label", acts({"action": "ADD_SLOT", "target": "@nowhere", "slot": "v", "value": 1}, define(m("return 1")))),
    ("redefine_dnu_traits", acts({**define("def doesNotUnderstand(self, message):\n    return 1\n", "doesNotUnderstand:"), "target": "traits"}), PM),
    ("remove_dnu_traits", acts({"action": "REMOVE_SLOT", "target": "traits", "slot": "doesNotUnderstand"}), PM),
    ("repoint_traits_name", acts({"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "t", "name": "traits"}), PM),
    ("reparent_traits", acts({"action": "SET_PARENT", "target": "traits", "parents": "nil"}), PM),
    ("rollback_genesis_method", acts({"action": "ROLLBACK_METHOD", "target": "traits", "selector": "isNil", "version": 1}), PM),
    ("remove_genesis_slot", acts({"action": "REMOVE_SLOT", "target": "nil", "slot": "isNil"}), PM),
    ("redefine_review", acts({**define("def reviewProposal(self, p):\n    return True\n", "reviewProposal:"), "target": "traits"}), PM),
])

# --- os: the OS layer alone --------------------------------------------------------------
# Run only directly, on a supervisor whose methods get the real os, socket, subprocess
# and ctypes (uvm.methods' test-only switch): the Python wall is bypassed on purpose.
# A call may answer (an error code) or fail; what must hold is the host: the canaries,
# the listener the test opens, the host file's secret, the image file, the supervisor.
# Arguments named "$PORT", "$HOSTFILE", "$IMAGE", "$SUPERVISOR" are filled in by the test.

OS_ALONE = _cases("os", [
    ("system_touch", m(f"return os.system('{TOUCH}')")),
    ("subprocess_sleep", m(f"return subprocess.Popen(['sleep', '{CANARY_SLEEP}']).pid")),
    ("posix_spawn_sleep", m(f"return os.posix_spawn('/bin/sleep', ['sleep', '{CANARY_SLEEP}'], {{}})")),
    ("ctypes_system", m(f"return ctypes.CDLL(None).system(b'{TOUCH}')")),
    ("open_create", m(f"fd = os.open('{CANARY_FILE}', os.O_CREAT | os.O_WRONLY)\nreturn os.write(fd, b'x')")),
    ("read_host_file", m("fd = os.open(p, os.O_RDONLY)\nreturn os.read(fd, 200).decode()", "self, p"),
     {"args": ("$HOSTFILE",)}),
    ("write_image_file", m("fd = os.open(p, os.O_WRONLY | os.O_APPEND)\nreturn os.write(fd, b'garbage')", "self, p"),
     {"args": ("$IMAGE",)}),
    ("supervisor_environ", m("fd = os.open('/proc/' + str(pid) + '/environ', os.O_RDONLY)\nreturn os.read(fd, 100000).decode()",
                             "self, pid"), {"args": ("$SUPERVISOR",)}),
    ("signal_supervisor", m("os.kill(pid, 15)\nreturn 1", "self, pid"), {"args": ("$SUPERVISOR",)}),
    ("socket_connect", m("s = socket.socket()\ns.connect(('127.0.0.1', port))\nreturn s.send(b'x')", "self, port"),
     {"args": ("$PORT",)}),
    ("socket_udp", m("s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nreturn s.sendto(b'x', ('127.0.0.1', port))",
                     "self, port"), {"args": ("$PORT",)}),
    ("environ_secret", m(f"return os.environ.get('{SECRET_ENV}')")),
    ("exec_replace", m(f"os.execv('/bin/sh', ['sh', '-c', '{TOUCH}'])")),
])

CASES: list[Case] = [*HOST, *FORMAT, *MODULES, *CRASH, *BUDGET, *AGREE, *INTEGRITY, *INTROSPECT,
                     *ACTS]


# --- the benign side --------------------------------------------------------------------

@dataclass(frozen=True)
class Benign:
    id: str
    source: str
    expected: Any
    selector: str = "m"
    args: tuple[Any, ...] = ()


def b(name: str, body: str, expected: Any, params: str = "self", args: tuple[Any, ...] = ()) -> Benign:
    return Benign(name, m(body, params), expected, "m", args)


BENIGN: list[Benign] = [
    b("fstring", "return f'{self.title}: {self.n:03d} {2.5:.2f}'", "escapee: 001 2.50"),
    b("str_format_plain", "return '{} and {}'.format('a', 1)", "a and 1"),
    b("str_format_named", "return '{name} is {age:d}'.format(name='Ann', age=31)", "Ann is 31"),
    b("format_index_literal_data", "return ['{0[k]}', '{x.y}']", ["{0[k]}", "{x.y}"]),
    b("percent_format", "return '%s-%03d' % ('a', 7)", "a-007"),
    b("private_locals", "_age = 41\n_names = ['b', 'a']\nreturn [_age + 1, sorted(_names)]", [42, ["a", "b"]]),
    b("underscore_loop", "t = 0\nfor _ in range(5):\n    t = t + 2\nreturn t", 10),
    b("comprehension_private", "return [_x * 2 for _x in range(4) if _x % 2 == 0]", [0, 4]),
    b("dict_comprehension", "return {k: len(k) for k in ['aa', 'b']}", {"aa": 2, "b": 1}),
    b("json_round_trip", "import json\nreturn json.loads(json.dumps({'a': [1, 2, {'b': None}]}))", {"a": [1, 2, {"b": None}]}),
    b("dates", "import datetime\nd = datetime.date(2024, 2, 28) + datetime.timedelta(days=2)\nreturn d.isoformat()", "2024-03-01"),
    b("import_time_dates", "import time\nt = time.strptime('2024-01-02', '%Y-%m-%d')\nreturn [t.tm_year, t.tm_yday]", [2024, 2]),
    b("decimal_localcontext", "import decimal\nwith decimal.localcontext() as ctx:\n    ctx.prec = 5\n    r = decimal.Decimal(1) / decimal.Decimal(7)\nreturn str(r)", "0.14286"),
    b("decimal_quantize", "import decimal\nreturn str(decimal.Decimal('2.675').quantize(decimal.Decimal('0.01'), rounding=decimal.ROUND_HALF_UP))", "2.68"),
    b("sorting_with_key", "people = [{'n': 'b', 'a': 3}, {'n': 'a', 'a': 5}]\nreturn [p['n'] for p in sorted(people, key=lambda p: -p['a'])]", ["a", "b"]),
    b("sorted_items_key", "return sorted(self.items, reverse=True)", [3, 2, 1]),
    b("recursion_within_limits", "def fib(k):\n    return k if k < 2 else fib(k - 1) + fib(k - 2)\nreturn fib(15)", 610),
    b("clone_and_set", "c = self.clone()\nc.setSlot_value('colour', 'red')\nreturn c.colour", "red"),
    b("set_slot_and_read", "self.setSlot_value('n', self.n + 41)\nreturn self.n", 42),
    b("string_methods", "s = '  Hello, World  '\nreturn [s.strip().lower(), s.split(','), 'x'.join(['a', 'b']), s.count('l')]",
      ["hello, world", ["  Hello", " World  "], "axb", 3]),
    b("math_statistics", "import math\nimport statistics\nreturn [math.gcd(12, 18), round(math.hypot(3, 4)), statistics.mean([1, 2, 3, 6])]", [6, 5, 3]),
    b("dict_set_ops", "a = {'x': 1}\na.update(y=2)\ns = {1, 2} | {2, 3}\nreturn [sorted(a), sorted(s), len(s & {1})]", [["x", "y"], [1, 2, 3], 1]),
    b("augmented_local", "t = 1\nt += 4\nt *= 2\nreturn t", 10),
    b("enumerate_zip", "return [[i, a, c] for i, (a, c) in enumerate(zip('ab', 'cd'))]", [[0, "a", "c"], [1, "b", "d"]]),
    b("try_except_value", "try:\n    int('x')\nexcept ValueError as e:\n    return 'bad: ' + str(e)[:7]", "bad: invalid"),
    b("regex", "import re\nreturn re.findall('[0-9]+', 'a1b22c333')", ["1", "22", "333"]),
    b("fractions", "import fractions\nreturn str(fractions.Fraction(1, 3) + fractions.Fraction(1, 6))", "1/2"),
    b("collections_counter", "import collections\nreturn collections.Counter('abca').most_common(1)", [["a", 2]]),
    b("itertools_groupby", "import itertools\nreturn [[k, len(list(g))] for k, g in itertools.groupby('aabccc')]", [["a", 2], ["b", 1], ["c", 3]]),
    b("with_args", "return x * 2 + y", 7, params="self, x, y", args=(3, 1)),
    b("ordinary_getattr_default", "return [getattr(2.5, 'imag', None), getattr('s', 'nope', 'fallback')]", [0.0, "fallback"]),
    b("isinstance_checks", "return [isinstance(1, int), isinstance('s', str), isinstance([], (list, tuple))]", [True, True, True]),
    b("hashlib_digest", "import hashlib\nreturn hashlib.sha256(b'abc').hexdigest()[:8]", "ba7816bf"),
    b("random_instance", "import random\nr = random.Random(5)\nreturn len([r.random() for _ in range(3)])", 3),
    b("nested_data_result", "return {'a': [1, {'b': (2, 3)}], 'c': None, 'd': 1.5}", {"a": [1, {"b": [2, 3]}], "c": None, "d": 1.5}),
]


# --- holes not closed yet: case id -> {path: "<part>: <why>"} ---------------------------

HOLES: dict[str, dict[str, str]] = {
}
