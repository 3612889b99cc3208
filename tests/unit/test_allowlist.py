"""What methods may import: capability namespaces by exact name, plus the env's packages whole."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from uvm import MethodFailed, MethodSourceError, allowlist
from uvm.allowlist import set_allowed, top_level_modules
from uvm.methods import compile_method, imports_of


@pytest.fixture(autouse=True)
def restore_allowlist() -> Iterator[None]:
    saved = allowlist.package_modules()
    try:
        yield
    finally:
        set_allowed(saved)


@pytest.fixture
def tiny_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module only importable from tmp_path (not installed, not stdlib)."""
    name = f"batos_tiny_{tmp_path.name.replace('-', '_')[-24:]}"
    (tmp_path / f"{name}.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


def run(source: str):
    return compile_method(source)(None)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import math\n    return math.floor(2.5)", 2),
        ("from math import sqrt\n    return sqrt(16)", 4.0),
        ("import collections.abc\n    return isinstance([], collections.abc.Sequence)", True),
        ("import collections.abc as cabc\n    return isinstance({}, cabc.Mapping)", True),
        ("import json\n    return json.loads('[1, 2]')", [1, 2]),
        ("import itertools, functools\n    return functools.reduce(max, itertools.chain([1], [3]))", 3),
        ("from fractions import Fraction\n    return str(Fraction(1, 3) + Fraction(1, 6))", "1/2"),
        ("import hashlib\n    return hashlib.sha256(b'').hexdigest()[:8]", "e3b0c442"),
        ("import time\n    return time.gmtime(86400).tm_mday", 2),
        ("from string import ascii_lowercase\n    return ascii_lowercase[:3]", "abc"),
        ("import collections\n    return collections.abc.Mapping is not None", True),
    ],
)
def test_capability_namespaces_compile_and_run(source, expected):
    assert run("def f(self):\n    " + source + "\n") == expected


@pytest.mark.parametrize(
    ("statement", "module", "hint"),
    [
        ("import os", "os", "standard library but outside"),
        ("import sys", "sys", "standard library but outside"),
        ("import subprocess", "subprocess", "standard library but outside"),
        ("import io", "io", "standard library but outside"),
        ("import copy", "copy", "standard library but outside"),
        ("import abc", "abc", "standard library but outside"),
        ("import functools.singledispatch", "functools.singledispatch", "capability namespace"),
        ("import operator", "operator", "standard library but outside"),
        ("from typing import Any", "typing", "standard library but outside"),
        ("import os.path", "os.path", "standard library but outside"),
        ("import json.tool", "json.tool", "is a capability namespace, but"),
        ("import json.decoder", "json.decoder", "is a capability namespace, but"),
        ("from importlib import import_module", "importlib", "standard library but outside"),
        ("import uvm", "uvm", "kernel's own machinery"),
        ("from ZODB import DB", "ZODB", "kernel's own machinery"),
        ("import numpy_surely_absent", "numpy_surely_absent", "batos evolve --add"),
    ],
)
def test_denied_imports_name_the_module_and_the_rule(statement, module, hint):
    with pytest.raises(MethodSourceError) as info:
        compile_method(f"def f(self):\n    {statement}\n")
    message = str(info.value)
    assert f"module {module!r}" in message
    assert "line 2" in message
    assert "imports are not allowed in methods except" in message
    assert hint in message


@pytest.mark.parametrize(
    ("statement", "rule"),
    [
        ("from . import x", "relative imports"),
        ("from .sibling import x", "relative imports"),
        ("from math import *", "import \\*"),
        ("from functools import wraps", "'functools' grants no 'wraps'"),
        ("from functools import singledispatch", "grants no 'singledispatch'"),
        ("from collections import UserString", "grants no 'UserString'"),
        ("from collections import namedtuple", "grants no 'namedtuple'"),
        ("from time import sleep", "grants no 'sleep'"),
        ("from uuid import uuid1", "grants no 'uuid1'"),
        ("from math import _private", "private"),
    ],
)
def test_relative_star_and_denied_names_are_rejected(statement, rule):
    with pytest.raises(MethodSourceError, match=rule):
        compile_method(f"def f(self):\n    {statement}\n")


@pytest.mark.parametrize(
    ("source", "error", "text"),
    [
        # namespaces are not modules: nothing leads from them to other modules
        ("import uuid\n    return uuid.os", AttributeError, "grants no 'os'"),
        ("import datetime\n    return datetime.sys", AttributeError, "grants no 'sys'"),
        ("import statistics\n    return statistics.sys", AttributeError, "grants no 'sys'"),
        ("import re\n    return re.copyreg", AttributeError, "grants no 'copyreg'"),
        ("import json\n    return json.decoder", AttributeError, "grants no 'decoder'"),
        ("import json\n    return json.scanner", AttributeError, "grants no 'scanner'"),
        ("import functools\n    return functools.update_wrapper", AttributeError, "grants no"),
        ("import random\n    return random.Random().random.__self__", MethodSourceError, "_"),
    ],
)
def test_namespaces_lead_nowhere_else(source, error, text):
    if error is MethodSourceError:
        with pytest.raises(error, match=text):
            compile_method("def f(self):\n    " + source + "\n")
        return
    func = compile_method("def f(self):\n    " + source + "\n")
    with pytest.raises(error, match=text):
        func(None)


def test_the_restricted_import_enforces_the_policy_at_run_time():
    with pytest.raises(MethodSourceError, match="'os'"):
        allowlist.guarded_import("os")
    with pytest.raises(MethodSourceError, match="relative"):
        allowlist.guarded_import("x", None, None, ("y",), 1)
    with pytest.raises(MethodSourceError, match="grants no 'decoder'"):
        allowlist.guarded_import("json", None, None, ("decoder",), 0)
    top = allowlist.guarded_import("collections.abc")
    assert repr(top) == "<capabilities collections>"  # Python binds the top-level name
    assert repr(allowlist.guarded_import("collections.abc", None, None, ("Sequence",), 0)) == \
        "<capabilities collections.abc>"


def test_an_allowed_package_imports_after_set_allowed_and_not_after_removal(kernel, tiny_module):
    source = f"def twice(self, x):\n    import {tiny_module}\n    return {tiny_module}.double(x)\n"
    with pytest.raises(MethodSourceError, match="batos evolve --add"):
        kernel.send("genesis", "defineMethod:source:", ["twice:", source])
    assert tiny_module in set_allowed([tiny_module, "os", "uvm"])  # os, uvm: never from the env
    assert not allowlist.is_allowed("os")
    assert not allowlist.is_allowed("uvm")
    kernel.send("genesis", "defineMethod:source:", ["twice:", source])
    assert kernel.send("genesis", "twice:", [21]) == 42
    from_import = f"def half(self, x):\n    from {tiny_module} import double\n    return double(x) // 4\n"
    kernel.send("genesis", "defineMethod:source:", ["half:", from_import])
    assert kernel.send("genesis", "half:", [4]) == 2

    set_allowed([])  # the package was removed: cached functions must not survive
    with pytest.raises(MethodSourceError, match=tiny_module):
        kernel.send("genesis", "twice:", [21])
    with pytest.raises(MethodSourceError, match=tiny_module):
        compile_method(source)


def test_a_function_compiled_before_a_removal_is_stopped_at_run_time(tiny_module):
    set_allowed([tiny_module])
    func = compile_method(f"def f(self):\n    import {tiny_module}\n    return 1\n")
    set_allowed([])
    with pytest.raises(MethodSourceError, match=tiny_module):
        func(None)


def test_a_denied_import_through_the_kernel_changes_nothing(kernel, db):
    before = db.storage.lastTransaction()
    with pytest.raises(MethodSourceError, match="'os'"):
        kernel.send("genesis", "defineMethod:source:", ["f", "def f(self):\n    import os\n"])
    assert db.storage.lastTransaction() == before


def test_a_module_that_fails_at_run_time_is_a_method_failure(kernel):
    kernel.send("genesis", "defineMethod:source:", [
        "hop", "def hop(self):\n    import uuid\n    return uuid.os.getcwd()\n"])
    with pytest.raises(MethodFailed, match="AttributeError"):
        kernel.send("genesis", "hop")


def test_imports_of_lists_top_level_modules():
    source = textwrap.dedent("""\
        def f(self):
            import json, collections.abc
            from email.mime import text
            from . import sibling
            return 1
        """)
    assert imports_of(source) == {"json", "collections", "email"}
    assert imports_of("def broken(:\n") == set()


def test_top_level_modules_of_installed_distributions():
    assert top_level_modules(["pydantic"]) == {"pydantic"}
    assert "ZODB" in top_level_modules(["ZODB"])
    assert top_level_modules(["Surely-Not_Installed.pkg"]) == {"surely_not_installed_pkg"}
    assert allowlist.distribution_modules("surely-not-installed") is None
    with pytest.raises(TypeError):
        top_level_modules("pydantic")


def test_top_level_modules_from_an_unpacked_wheel_without_top_level_txt(tmp_path, monkeypatch):
    """A wheel as non-setuptools backends build it: only RECORD says what it installs."""
    site = tmp_path / "site"
    info = site / "tiny_dist-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "tinydist_pkg").mkdir()
    (site / "tinydist_pkg" / "__init__.py").write_text("VALUE = 7\n")
    (site / "tinydist_single.py").write_text("X = 1\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-dist\nVersion: 0.1\n")
    (info / "RECORD").write_text("\n".join([
        "tinydist_pkg/__init__.py,,", "tinydist_pkg/__pycache__/__init__.cpython-311.pyc,,",
        "tinydist_single.py,,", "__pycache__/tinydist_single.cpython-311.pyc,,",
        "tiny_dist-0.1.dist-info/METADATA,,", "tiny_dist-0.1.dist-info/RECORD,,",
        "../../bin/tiny,,", "tiny_dist.libs/libfoo.so,,", "_tiny_native.cpython-311-x86_64-linux-gnu.so,,",
        "__editable___tiny_finder.py,,",
    ]) + "\n")
    monkeypatch.syspath_prepend(str(site))
    assert top_level_modules(["tiny-dist"]) == {"tinydist_pkg", "tinydist_single", "_tiny_native"}
    assert top_level_modules(["Tiny_Dist"]) == top_level_modules(["tiny-dist"])
    set_allowed(top_level_modules(["tiny-dist"]))
    assert compile_method("def f(self):\n    import tinydist_pkg\n    return tinydist_pkg.VALUE\n")(
        None) == 7


def test_a_package_is_whole_but_what_it_leads_to_in_the_standard_library_is_not(tiny_module,
                                                                                tmp_path):
    (tmp_path / f"{tiny_module}.py").write_text(
        "import os\nimport json as codec\nVALUE = 7\ndef leak():\n    return os\n")
    set_allowed([tiny_module])
    assert compile_method(f"def f(self):\n    import {tiny_module}\n    return {tiny_module}.VALUE\n")(
        None) == 7
    for reach, text in [("os", "module 'os'"), ("codec", "module 'json'"),
                        ("leak().getcwd", "out of reach")]:
        func = compile_method(f"def f(self):\n    import {tiny_module}\n"
                              f"    return {tiny_module}.{reach}\n")
        with pytest.raises(AttributeError, match=text):
            func(None)
    with pytest.raises(MethodSourceError, match="'os'"):
        compile_method(f"def f(self):\n    from {tiny_module} import os\n    return os\n")(None)


def test_set_allowed_takes_names_not_a_string():
    with pytest.raises(TypeError):
        set_allowed("pydantic")
    assert set_allowed(["pydantic", "json", "not a name", ""]) == frozenset({"pydantic"})
    assert "pydantic" in allowlist.allowed_modules()
    assert "json" in allowlist.allowed_modules()


def test_copy_is_not_allowed_because_it_would_duplicate_identities():
    with pytest.raises(MethodSourceError, match="'copy'"):
        compile_method("def f(self):\n    import copy\n    return copy.deepcopy(self)\n")
