"""The process-wide compile cache: bounded, least recently used, filled only by use.

A compile check (``Method.define``, the crucible, verify) caches nothing, so a
message that defines thousands of sources and fails leaves the process as it
was; a function that ran is kept until the entry or byte limit evicts it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from uvm import MethodFailed, MethodSourceError, allowlist, methods
from uvm.methods import Method, cache_info, cached_function, compile_method

ROOT = Path(__file__).resolve().parents[2]


def source(tag: str, pad: int = 0) -> str:
    return f"def f(self):\n    return {tag + 'A' * pad!r}\n"


@pytest.fixture(autouse=True)
def empty_cache():
    methods.method_globals({})  # installs nothing, empties the cache
    yield
    methods.method_globals({})


def entries() -> list[tuple[str, int]]:
    return list(methods._cache)


def key(src: str) -> tuple[str, int]:
    return methods._digest(src), allowlist.version()


def test_a_compile_check_caches_nothing():
    func = compile_method(source("x"))
    assert func(None) == "x"
    assert cache_info()["entries"] == 0
    assert cache_info()["bytes"] == 0
    Method(source("y"), author="test")  # define is a compile check too
    assert entries() == []


def test_a_source_that_fails_leaves_no_entry():
    bad = "def f(self):\n    import os\n    return os\n"
    with pytest.raises(MethodSourceError):
        compile_method(bad)
    with pytest.raises(MethodSourceError):
        cached_function(bad)
    with pytest.raises(MethodSourceError):
        Method(bad, author="test")
    assert entries() == []
    assert cache_info()["bytes"] == 0


def test_a_use_caches_once_and_the_method_keeps_its_own():
    method = Method(source("v"), author="test")
    func = method.function()
    assert func(None) == "v"
    assert entries() == [key(source("v"))]
    assert method.function() is func
    assert cached_function(source("v")) is func
    assert Method(source("v"), author="test").function() is func  # same digest, one entry


def test_least_recently_used_is_evicted_first(monkeypatch):
    monkeypatch.setattr(methods, "CACHE_ENTRIES", 3)
    a, b, c = (cached_function(source(t)) for t in "abc")
    assert cached_function(source("a")) is a  # a is now the most recent
    d = cached_function(source("d"))
    assert entries() == [key(source(t)) for t in "cad"]
    assert cached_function(source("a")) is a
    assert cached_function(source("d")) is d
    assert cached_function(source("c")) is c
    assert cached_function(source("b")) is not b  # evicted: compiled anew
    assert entries() == [key(source(t)) for t in "adcb"][-3:]


def test_the_byte_budget_evicts_and_bounds_the_total(monkeypatch):
    cached_function(source("probe", 20_000))
    one = cache_info()["bytes"]
    assert one > 40_000  # the source and the constant in the code object both count
    methods.method_globals({})
    monkeypatch.setattr(methods, "CACHE_BYTES", int(one * 3.5))
    monkeypatch.setattr(methods, "CACHE_ENTRY_BYTES", one * 2)
    for i in range(10):
        assert cached_function(source(f"t{i}-", 20_000))(None).startswith(f"t{i}-")
        assert cache_info()["bytes"] <= one * 3.5
    assert entries() == [key(source(f"t{i}-", 20_000)) for i in (7, 8, 9)]
    assert cache_info()["bytes"] == sum(size for _f, size in methods._cache.values())


def test_a_function_over_the_entry_limit_runs_but_is_not_kept(monkeypatch):
    monkeypatch.setattr(methods, "CACHE_ENTRY_BYTES", 10_000)
    big = source("big", 20_000)
    assert cached_function(big)(None).startswith("big")
    assert entries() == []
    cached_function(source("small"))
    assert entries() == [key(source("small"))]


def test_an_allowlist_change_empties_the_cache():
    saved = allowlist.package_modules()
    old = cached_function(source("p"))
    assert len(entries()) == 1
    try:
        allowlist.set_allowed(saved)  # a new version, even with the same packages
        assert cached_function(source("q"))(None) == "q"
        assert entries() == [key(source("q"))]  # p went with the old version
        assert cached_function(source("p")) is not old
    finally:
        allowlist.set_allowed(saved)


def test_a_function_compiled_under_a_replaced_policy_is_not_kept(monkeypatch):
    # a thread that read the policy's version before set_allowed ran elsewhere
    saved = allowlist.package_modules()
    try:
        old = allowlist.version()
        allowlist.set_allowed(saved)
        kept = cached_function(source("new"))
        monkeypatch.setattr(methods.allowlist, "version", lambda: old)
        assert cached_function(source("late"))(None) == "late"
        monkeypatch.undo()
        assert entries() == [key(source("new"))]  # late not kept, new not dropped
        assert cached_function(source("new")) is kept
    finally:
        allowlist.set_allowed(saved)

def test_threads_share_one_bounded_cache(monkeypatch):
    monkeypatch.setattr(methods, "CACHE_ENTRIES", 16)
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(n: int) -> None:
        try:
            start.wait(timeout=10)
            for i in range(150):
                tag = f"s{(n * 7 + i) % 40}"
                assert cached_function(source(tag))(None) == tag
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    info = cache_info()
    assert 0 < info["entries"] <= 16
    assert info["bytes"] == sum(size for _f, size in methods._cache.values())


BLOAT = (
    "def bloat(self, tag, n, call):\n    pad = 'A' * 20000\n    for i in range(n):\n"
    "        define_method(self, 'z', 'def f(self):\\n    return ' + repr(tag + str(i) + pad)"
    " + '\\n')\n"
    "        if call:\n            self.z()\n"
    "    raise ValueError('abort')\n"
)


def test_a_failed_message_that_defines_many_sources_leaves_the_cache_as_it_was(kernel):
    kernel.send("genesis", "defineMethod:source:", ["bloat", BLOAT])
    before = cache_info()
    with pytest.raises(MethodFailed, match="abort"):
        kernel.send("genesis", "bloat", ["a", 300, False])
    assert cache_info()["entries"] <= before["entries"] + 1  # bloat itself, once it ran
    assert cache_info()["bytes"] < before["bytes"] + 50_000


def test_a_message_that_runs_many_sources_keeps_at_most_the_budget(kernel, monkeypatch):
    monkeypatch.setattr(methods, "CACHE_ENTRIES", 64)
    monkeypatch.setattr(methods, "CACHE_BYTES", 2 << 20)
    kernel.send("genesis", "defineMethod:source:", ["bloat", BLOAT])
    for tag in "ab":
        with pytest.raises(MethodFailed, match="abort"):
            kernel.send("genesis", "bloat", [tag, 300, True])
        info = cache_info()
        assert info["entries"] <= 64
        assert info["bytes"] <= 2 << 20
    assert info["bytes"] > 1 << 20  # it did cache what ran, up to the budget


RSS_SCRIPT = textwrap.dedent("""
    import gc, json, os, sys, tempfile
    from uvm import Kernel, MethodFailed, bootstrap, open_db
    def rss():
        return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') >> 20
    db = open_db(os.path.join(sys.argv[1], 'image.fs')); bootstrap(db); k = Kernel(db)
    k.send('genesis', 'defineMethod:source:', ['bloat', sys.argv[2]])
    def once(tag):
        try:
            k.send('genesis', 'bloat', [tag, 1000, False])
        except MethodFailed:
            pass
        gc.collect()
    once('warm')
    base = rss()
    for tag in 'abcd':
        once(tag)
    print(json.dumps({'base': base, 'after': rss()}))
""")


def test_failed_messages_do_not_grow_the_process(tmp_path):
    # 4 messages x 1000 sources of 20 kB: about 160 MiB kept for good before the fix
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(tmp_path), BLOAT], cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rss = json.loads(done.stdout.strip().splitlines()[-1])
    assert rss["after"] - rss["base"] < 40, rss
