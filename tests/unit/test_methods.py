"""Methods as data: the restricted compile policy, history and rollback through messages."""

from __future__ import annotations

import pytest

from uvm import BadArguments, MethodFailed, MethodSourceError
from uvm.methods import cached_function, compile_method

GREET_V1 = 'def greet(self, name):\n    return "hello " + name\n'
GREET_V2 = 'def greet(self, name):\n    return "good day, " + name\n'


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("", "non-empty"),
        ("def f(self):\n  return (\n", "does not parse"),
        ("x = 1\n", "exactly one function"),
        ("def f(self):\n    return 1\ndef g(self):\n    return 2\n", "exactly one function"),
        ("def f():\n    return 1\n", "receiver"),
        ("@staticmethod\ndef f(self):\n    return 1\n", "decorators"),
        ("def f(self):\n    import os\n    return os\n", "imports are not allowed"),
        ("def f(self):\n    from os import path\n", "imports are not allowed"),
        ("def f(self):\n    class A:\n        pass\n", "class definitions"),
        ("def f(self):\n    return self.__class__\n", "restricted policy"),
        ("def f(self):\n    return self._slots\n", "restricted policy"),
        ("def f(self):\n    self.n += 1\n", "restricted policy"),
        ("def f(self):\n    _x_ = 1\n", "restricted runtime"),
        ("def f(self, _getattr_):\n    return 1\n", "restricted runtime"),
        ("def f(self, x: int):\n    return x\n", "annotations are not allowed"),
        ("def f(self):\n    raise SystemExit(1)\n", "'SystemExit' is not available"),
        ("def f(self):\n    try:\n        pass\n    finally:\n        return 1\n", "finally"),
        ("def f(self):\n    global x\n", "'global' is not allowed"),
        ("def clone_object(self):\n    return 1\n", "shadow the primitive"),
    ],
)
def test_compile_policy_rejects_with_the_rule_named(source, rule):
    with pytest.raises(MethodSourceError, match=rule):
        compile_method(source)


@pytest.mark.parametrize("name", ["eval", "exec", "open", "compile", "globals", "__import__", "setattr",
                                  "vars", "dir", "type"])
def test_dangerous_builtins_are_absent(kernel, name):
    src = f"def f(self):\n    return {name}\n" if not name.startswith("_") else None
    if src is None:
        with pytest.raises(MethodSourceError):
            compile_method(f"def f(self):\n    return {name}('os')\n")
        return
    kernel.send("genesis", "defineMethod:source:", ["f", src])
    with pytest.raises(MethodFailed, match="NameError"):
        kernel.send("genesis", "f")


def test_docstring_before_the_def_is_allowed():
    func = compile_method('"""doc"""\ndef f(self, a, b=2):\n    return a + b\n')
    assert func(None, 1) == 3


def test_compiled_functions_are_cached_per_source():
    # a compile check caches nothing (tests/unit/test_compile_cache.py); a use does
    assert cached_function(GREET_V1) is cached_function(GREET_V1)
    assert compile_method(GREET_V1) is not compile_method(GREET_V1)


def test_method_code_reaches_slots_by_delegation_and_writes_slots(kernel):
    kernel.send("genesis", "setSlot:value:", ["count", 1])
    kernel.send("genesis", "defineMethod:source:", [
        "bump", "def bump(self):\n    self.count = self.count + 1\n    return self.count\n"])
    child = kernel.send("genesis", "clone")
    # the clone reads count through its own copy of the slot, writes its own
    assert kernel.send(child["$ref"], "bump") == 2
    assert kernel.send("genesis", "count") == 1


def test_history_lists_every_version_with_author_and_reason(kernel):
    assert kernel.send("genesis", "defineMethod:source:", ["greet:", GREET_V1, "first"]) == 1
    assert kernel.send("genesis", "defineMethod:source:", ["greet:", GREET_V2, "politer"],
                       author="mind") == 2
    history = kernel.send("genesis", "methodHistory:", ["greet:"])
    assert [(h["version"], h["author"], h["reason"]) for h in history] == [
        (1, "architect", "first"), (2, "mind", "politer")]
    assert history[0]["source"] == GREET_V1
    assert history[1]["timestamp"] >= history[0]["timestamp"]
    assert kernel.send("genesis", "greet:", ["Ada"]) == "good day, Ada"


def test_rollback_appends_the_old_version_and_runs_it(kernel):
    kernel.send("genesis", "defineMethod:source:", ["greet:", GREET_V1])
    kernel.send("genesis", "defineMethod:source:", ["greet:", GREET_V2])
    assert kernel.send("genesis", "rollbackMethod:to:", ["greet:", 1]) == 3
    assert kernel.send("genesis", "greet:", ["Ada"]) == "hello Ada"
    history = kernel.send("genesis", "methodHistory:", ["greet"])
    assert len(history) == 3
    assert history[2]["reason"] == "rollback to version 1"
    assert history[2]["source"] == GREET_V1


def test_rollback_to_a_version_that_does_not_exist_changes_nothing(kernel, db):
    kernel.send("genesis", "defineMethod:source:", ["greet:", GREET_V1])
    before = db.storage.lastTransaction()
    with pytest.raises(BadArguments, match="between 1 and 1"):
        kernel.send("genesis", "rollbackMethod:to:", ["greet:", 5])
    assert db.storage.lastTransaction() == before


def test_rollback_of_an_inherited_method_points_at_its_holder(kernel):
    child = kernel.send("genesis", "clone")["$ref"]
    with pytest.raises(BadArguments, match="found on traits"):
        kernel.send(child, "rollbackMethod:to:", ["printString", 1])


def test_bad_source_leaves_method_and_image_unchanged(kernel, db):
    kernel.send("genesis", "defineMethod:source:", ["greet:", GREET_V1])
    before = db.storage.lastTransaction()
    with pytest.raises(MethodSourceError):
        kernel.send("genesis", "defineMethod:source:", ["greet:", "def greet(self, n):\n  return (\n"])
    assert db.storage.lastTransaction() == before
    assert len(kernel.send("genesis", "methodHistory:", ["greet:"])) == 1


def test_methods_cannot_modify_arbitrary_objects(kernel):
    kernel.send("genesis", "defineMethod:source:", [
        "poke", "def poke(self):\n    s = 'text'\n    s.attr = 1\n"])
    with pytest.raises(MethodFailed, match="cannot modify a str"):
        kernel.send("genesis", "poke")


def test_containers_written_by_methods_are_tracked(kernel):
    kernel.send("genesis", "setSlot:value:", ["items", []])
    kernel.send("genesis", "defineMethod:source:", [
        "add:", "def add(self, x):\n    self.items.append(x)\n    return len(self.items)\n"])
    kernel.send("genesis", "add:", [1])
    kernel.send("genesis", "add:", [2])
    assert kernel.send("genesis", "items") == [1, 2]


def test_a_missing_attribute_on_a_plain_value_raises_like_python(kernel):
    kernel.send("genesis", "defineMethod:source:", ["probe",
                "def probe(self):\n    return (21).nothing\n"])
    with pytest.raises(MethodFailed, match="AttributeError"):
        kernel.send("genesis", "probe", [])
