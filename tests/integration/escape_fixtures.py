"""The escape corpus's harness: one real supervisor, one crucible on the same image, canaries.

``Walls`` owns, for a whole test module,

* a real ``batos up`` (``supervisor_fixtures.Supervisor``) whose environment holds
  a secret (``SECRET_ENV``) that no reply, verdict or log may ever show;
* a ``Crucible`` whose trial workers open the SAME image as read-only ZEO
  clients of the supervisor's ZEO server (the trial is the live path), with
  the secret in their environment too;
* a read-only ZEO client of that image, for ``uvm.genesis.verify`` and the
  graph digest of ``uvm.validation.validate_image``;
* two objects planted as a person: ``escapee`` (the receiver every proposal
  is tried on: the crucible's trials on it are aborted, the direct path
  clones it once per case) and ``prober``, whose ``fingerprint`` method
  answers what method code can observe of the incarnation's process-wide
  state (decimal context, ABC registries, codecs, builtins, random draws).

The canaries, checked after every case (``Walls.canaries``): the file
``CANARY_FILE`` does not exist, no process runs ``sleep CANARY_SLEEP``, the
secret is in no reply or verdict (the log files are searched once per
family, ``Walls.logs_clean``), the image's storage is byte-for-byte where it
was (size and last transaction: a case that commits nothing cannot change
the graph or its digest), and the fingerprint answers what it answered at
the start. When the live path is left unhealthy (a crash loop, a worker
spinning for ever: only while the budget and poison walls are missing),
``recover`` replaces the supervisor so that one broken wall fails one case,
not every case after it.

Nothing here sleeps for readiness: every wait is ``wait_until`` with a
deadline, every receive has a timeout, and teardown stops every process.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from bridge import RemoteError, Timeout
from crucible import Crucible, ImageRef, InvalidProposal, Policy, TrialLimits, Verdict
from supervisor.config import Home
from tests.conftest import wait_until
from tests.integration.supervisor_fixtures import Supervisor, alive

__all__ = [
    "CANARY_FILE", "CANARY_SLEEP", "FINGERPRINT", "PREDICTABLE_DRAWS", "SECRET_ENV",
    "Outcome", "Walls",
]

SECRET_ENV = "BATOS_ESCAPE_SECRET"
EXPOSE_OS_ENV = "BATOS_UNSAFE_TEST_EXPOSE_OS"  # uvm.methods: real os, socket, ... in methods
REPORT_ENV = "BATOS_ESCAPE_REPORT"  # a path: what happened to each case on each path, as JSON
CANARY_FILE = "/tmp/batos-escape-canary"
CANARY_SLEEP = "4242"
#: the seeds hostile cases use: after any of them, the next draw must not be predictable
PREDICTABLE_DRAWS = frozenset(random.Random(seed).random() for seed in (0, 1, 42, 1234))

CALL_TIMEOUT = 20.0  # a direct call's reply; the budget walls must answer well within it
DEFINE_TIMEOUT = 30.0
SUPERVISOR_CONFIG: dict[str, Any] = {
    "workers": 1,  # one worker thread: thread-local state (decimal) is seen by the fingerprint
    "heartbeat_timeout": 3.0,
    "request_timeout": 20.0,
    "max_restarts": 3,
    "restart_period": 30.0,
    "backoff_initial": 0.05,
    "backoff_max": 0.5,
    "degraded_retry": 1.0,
    # each message's budget (uvm.budget) in the incarnation, as tight as the trial's
    "budget": {"cpu": 1.5, "wall": 3.0, "grace": 0.5},
    # the secret reaches the incarnation's environment, as a mind's API key would: only
    # the walls inside the process keep method code from it
    "sandbox": {"pass_env": [SECRET_ENV]},
}
# memory: the live budget (envs.confine.memory_budget), as the default policy has it
TRIAL_LIMITS = TrialLimits(cpu_seconds=1.5, wall_seconds=3.0)

# What benign method code can observe of its process. Every entry must be the same
# before and after each hostile case: a difference is state one message left for the next.
FINGERPRINT = '''def fingerprint(self):
    import collections
    import datetime
    import decimal
    import fractions
    import json
    import math
    import numbers
    import random
    import re
    import statistics
    ctx = decimal.getcontext()
    try:
        zero = str(decimal.Decimal(1) / decimal.Decimal(0))
    except ZeroDivisionError:
        zero = "trapped"
    with decimal.localcontext(prec=5):
        local_third = str(decimal.Decimal(1) / decimal.Decimal(3))
    return {
        "decimal_prec": ctx.prec,
        "decimal_rounding": str(ctx.rounding),
        "decimal_seventh": str(decimal.Decimal(1) / decimal.Decimal(7)),
        "decimal_zero": zero,
        "decimal_local": local_third,
        "decimal_after_local": str(decimal.Decimal(1) / decimal.Decimal(3)),
        "decimal_default_prec": decimal.DefaultContext.prec,
        "decimal_default_rounding": str(decimal.DefaultContext.rounding),
        "decimal_extended_prec": decimal.ExtendedContext.prec,
        "str_is_integral": isinstance("x", numbers.Integral),
        "str_is_number": isinstance("x", numbers.Number),
        "float_is_integral": isinstance(1.5, numbers.Integral),
        "int_is_integral": isinstance(3, numbers.Integral),
        "list_is_mapping": isinstance([], collections.abc.Mapping),
        "dict_is_sequence": isinstance({}, collections.abc.Sequence),
        "json_dumps": json.dumps({"a": [1, 2.5, None, "\\u00e9"]}, sort_keys=True),
        "json_loads": json.loads('{"a": [1, 2.5, null, "\\\\u00e9", true]}'),
        "re_sub": re.sub("a+", "b", "caaat"),
        "re_match": bool(re.match("[0-9]+$", "12345")),
        "stats_mean": statistics.mean([1, 2, 3, 4]),
        "stats_median": statistics.median([3, 1, 2]),
        "math": [math.pi, math.sqrt(2), math.inf > 0],
        "fraction": str(fractions.Fraction(1, 3) + fractions.Fraction(1, 6)),
        "date": datetime.date(2020, 1, 31).isoformat(),
        "delta": (datetime.date(2020, 3, 1) - datetime.date(2020, 2, 1)).days,
        "builtins": [abs(-2), len("abc"), str(12), repr(1.5), min(3, 1), max(1, 3),
                     sum([1, 2]), sorted([3, 1, 2]), round(2.675, 2), int("7"),
                     float("1.5"), bool(0), list(range(3)), "a-b".split("-")],
        "fstring": f"{3.14159:.2f}",
        "counter": sorted(collections.Counter("abca").items()),
        "draw": random.random(),
        "draw_seeded": random.Random(7).random(),
    }
'''


@dataclass
class Outcome:
    """How one case ended on one path: ``refused`` (at definition), ``failed`` (an error
    reply at call), ``answered`` (a value: the wall did not hold), ``timeout``."""

    how: str
    type: str = ""
    message: str = ""
    value: Any = None
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        shown = self.message if self.how != "answered" else repr(self.value)
        return f"{self.how} {self.type} {str(shown)[:300]}"


def _sleepers() -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmd = proc.info["cmdline"] or []
            if any(CANARY_SLEEP in part for part in cmd) and any("sleep" in part for part in cmd):
                if proc.pid != os.getpid():
                    found.append(proc.pid)
    return found


class Walls:
    """The live path (a supervisor) and the review path (a crucible) on one image."""

    def __init__(self, root: Path, *, expose_os: bool = False) -> None:
        self.root = root
        # the Python wall deliberately bypassed (uvm.methods' test-only switch): only the
        # OS layer stands; no crucible then, and the secret stays in the supervisor's env
        self.expose_os = expose_os
        self.secret = "escsecret-" + secrets.token_hex(12)
        self._saved_env = os.environ.get(SECRET_ENV)
        if not expose_os:
            os.environ[SECRET_ENV] = self.secret  # the trial workers inherit it
        self.generation = 0
        self.sup: Supervisor | None = None
        self.crucible: Crucible | None = None
        self.db: Any = None
        self.baseline: dict[str, Any] | None = None
        self.replies: list[str] = []
        self.restarts = 0
        self.results: dict[str, dict[str, str]] = {}  # case id -> path -> what happened
        self.start()

    # --- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        self.generation += 1
        config = dict(SUPERVISOR_CONFIG)
        env = {SECRET_ENV: self.secret}
        if self.expose_os:
            config["sandbox"] = {"pass_env": []}
            env[EXPOSE_OS_ENV] = "1"
        self.sup = Supervisor(self.root / f"sup{self.generation}", config=config, env=env)
        self.sup.start()
        self.home = Home.at(self.sup.home)
        self.call(self.sup.client, "genesis", "applyActs:", [
            {"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "e", "name": "escapee",
             "slots": {"n": 1, "items": [3, 1, 2], "title": "escapee", "table": {"k": "v"}}},
            {"action": "CLONE_PROTOTYPE", "target": "genesis", "label": "p", "name": "prober"},
            {"action": "DEFINE_METHOD", "target": "@p", "selector": "fingerprint",
             "source": FINGERPRINT},
        ], timeout=DEFINE_TIMEOUT)
        from uvm import open_db

        self.db = open_db(zeo=str(self.home.zeo_socket), read_only=True)
        if not self.expose_os:
            self.crucible = Crucible(
                image=ImageRef(zeo=str(self.home.zeo_socket)),
                policy=Policy(limits=TRIAL_LIMITS),
            )
        self.baseline = self.fingerprint()
        self.pid = self.sup.active_pid()

    def stop(self) -> list[str]:
        problems: list[str] = []
        if self.crucible is not None:
            self.crucible.close()
            self.crucible = None
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.close()
            self.db = None
        if self.sup is not None:
            self.sup.expect_clean = False  # a case may have left it degraded: judged per case
            problems = self.sup.close()
            self.sup = None
        return problems

    def note(self, case_id: str, path: str, what: str) -> None:
        self.results.setdefault(case_id, {})[path] = what[:400]

    def close(self) -> None:
        report = os.environ.get(REPORT_ENV)
        if report:  # merged: both harnesses of a module write to one file
            path = Path(report)
            merged = json.loads(path.read_text()) if path.exists() else {}
            for case_id, paths in self.results.items():
                merged.setdefault(case_id, {}).update(paths)
            path.write_text(json.dumps(merged, indent=1, sort_keys=True))
        self.stop()
        if self.expose_os:
            pass
        elif self._saved_env is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = self._saved_env
        with contextlib.suppress(FileNotFoundError):
            os.unlink(CANARY_FILE)
        for pid in _sleepers():
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()

    def recover(self) -> None:
        """A fresh supervisor (and crucible) after a case left the live path broken."""
        self.restarts += 1
        self.stop()
        self.start()

    # --- the two paths ------------------------------------------------------------

    def call(self, client: Any, target: str, selector: str, *args: Any,
             timeout: float = CALL_TIMEOUT) -> Any:
        value = client.send(target, selector, *args, timeout=timeout)
        self.replies.append(repr(value)[:100_000])
        return value

    def review(self, proposal: Any, selector: str, args: list[Any]) -> Any:
        """The crucible's verdict; a proposal the crucible refuses to take at all
        (``InvalidProposal``: too large, not a proposal) is a rejection with that reason."""
        assert self.crucible is not None
        try:
            return self.crucible.review(proposal, receiver="escapee", selector=selector,
                                        args=args)
        except InvalidProposal as exc:
            return Verdict(approved=False, reasons=[f"not taken: {exc}"], stages=[])

    def define(self, name: str, proposal: Any, selector: str) -> Outcome | None:
        """Clone ``escapee`` as ``name`` and define the proposal on it, as a person, in one
        message. None when accepted, else how it was refused."""
        acts: list[dict[str, Any]] = [{"action": "CLONE_PROTOTYPE", "target": "escapee",
                                       "label": "e", "name": name}]
        if isinstance(proposal, str):
            acts.append({"action": "DEFINE_METHOD", "target": "@e", "selector": selector,
                         "source": proposal})
        else:
            acts += [{**act, "target": act.get("target", "@e")} for act in proposal["acts"]]
        return self._exchange(lambda client: self.call(client, "genesis", "applyActs:", acts,
                                                       timeout=DEFINE_TIMEOUT), refused=True)

    def send(self, name: str, selector: str, args: list[Any]) -> Outcome:
        outcome = self._exchange(lambda client: self.call(client, name, selector, *args))
        assert outcome is not None
        return outcome

    def _exchange(self, fn: Any, refused: bool = False) -> Outcome | None:
        assert self.sup is not None
        with self.sup.new_client(timeout=CALL_TIMEOUT) as client:
            try:
                value = fn(client)
            except RemoteError as exc:
                self.replies.append(f"{exc.type}: {exc.message}")
                return Outcome("refused" if refused else "failed", exc.type, exc.message)
            except Timeout:
                return Outcome("timeout")
        return None if refused else Outcome("answered", value=value)

    # --- canaries -----------------------------------------------------------------

    def image_mark(self) -> tuple[int, int]:
        """The storage's file: any commit appends to it (size) and rewrites its mtime."""
        stat = self.home.image.stat()
        return stat.st_size, stat.st_mtime_ns

    def fingerprint(self) -> dict[str, Any]:
        assert self.sup is not None
        return self.call(self.sup.client, "prober", "fingerprint", timeout=CALL_TIMEOUT)

    def serving(self, timeout: float = 10.0) -> bool:
        """Serving with a ready incarnation that answers a message, within ``timeout``."""
        assert self.sup is not None
        try:
            self.sup.wait_state("serving", timeout)
            wait_until(lambda: self._answers(), timeout, interval=0.1)
        except AssertionError:
            return False
        return True

    def _answers(self) -> bool:
        assert self.sup is not None
        try:
            return self.sup.client.send("genesis", "isNil", timeout=2) is False
        except (Timeout, RemoteError):
            return False

    def spinning(self) -> bool:
        """The incarnation burns CPU while nothing was sent: a message still running."""
        assert self.sup is not None
        try:
            pid = self.sup.active_pid(timeout=10)
            proc = psutil.Process(pid)
            before = sum(proc.cpu_times()[:2])
            time.sleep(0.3)  # a measurement window, not a wait for readiness
            return sum(proc.cpu_times()[:2]) - before > 0.2
        except (AssertionError, psutil.Error):
            return True

    def canaries(self, *, texts: list[str]) -> list[str]:
        """What went wrong with the host and the process (not the image); empty if nothing."""
        problems = []
        if os.path.exists(CANARY_FILE):
            problems.append(f"the canary file {CANARY_FILE} was created")
            os.unlink(CANARY_FILE)
        sleepers = _sleepers()
        if sleepers:
            problems.append(f"a process 'sleep {CANARY_SLEEP}' was started: pids {sleepers}")
            for pid in sleepers:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
        for text in texts:
            if self.secret in text:
                problems.append(f"the secret appeared in: {text[:300]}")
        return problems

    def state_changed(self) -> list[str]:
        """Process-wide state the fingerprint sees, against the baseline."""
        try:
            now = self.fingerprint()
        except (RemoteError, Timeout) as exc:
            return [f"the fingerprint did not answer: {exc}"]
        assert self.baseline is not None
        problems = [f"process-wide {key}: {self.baseline[key]!r} -> {now.get(key)!r}"
                    for key in self.baseline if key != "draw" and now.get(key) != self.baseline[key]]
        if now.get("draw") in PREDICTABLE_DRAWS:
            problems.append(f"the random draw {now['draw']} follows a seed a case planted")
        return problems

    def logs_clean(self) -> list[str]:
        """Files under the harness's folder holding the secret: every supervisor's output,
        logs (supervisor, incarnations, ZEO) and image, of every generation."""
        found = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    if self.secret.encode() in path.read_bytes():
                        found.append(str(path))
        return found

    def large_files(self, limit: int = 32 << 20) -> list[str]:
        """Log files past ``limit`` bytes: a flood of errors must not fill the disk."""
        return [f"{path}: {path.stat().st_size} bytes" for path in self.root.rglob("*.log")
                if path.is_file() and path.stat().st_size > limit]

    def fresh(self) -> None:
        """Make the read-only ZEO client current: the server's last transaction (one round
        trip), then wait until this client has seen its invalidation (which the server may
        send after it answered the committer)."""
        assert self.db is not None
        storage = self.db.storage
        last = bytes.fromhex(storage.server_status()["last-transaction"])
        wait_until(lambda: storage.lastTransaction() >= last, timeout=10, interval=0.005)

    def snapshot(self, *names: str) -> dict[str, Any]:
        """The own slots of ``names`` and of every Genesis object, and the whole names table,
        read through the storage (not through image code), as comparable plain data."""
        from uvm.genesis import GENESIS
        from uvm.registry import Registry

        with self._reading() as conn:
            registry = Registry(conn.root())
            state: dict[str, Any] = {"names": sorted(registry.names.items())}
            for name in [*GENESIS, *names]:
                try:
                    obj = registry.resolve(name)
                except Exception as exc:  # noqa: BLE001 - a missing object is a finding
                    state[name] = f"unresolvable: {exc}"
                    continue
                state[name] = {"uuid": obj._uuid,
                               "slots": {k: _shown(v) for k, v in sorted(obj._slots.items())}}
            return state

    def graph(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """Every object reachable from the root: oid -> (class, referenced oids), read raw
        from the storage; what the digest is made of, for saying what changed."""
        from ZODB.serialize import referencesf
        from ZODB.utils import oid_repr, z64

        assert self.db is not None
        self.fresh()
        seen: dict[str, tuple[str, tuple[str, ...]]] = {}
        queue = [z64]
        while queue:
            oid = queue.pop()
            if oid_repr(oid) in seen:
                continue
            data, _serial = self.db.storage.load(oid)
            refs = sorted(set(referencesf(data)))
            head = data[:120].split(b"\n")[:2]
            seen[oid_repr(oid)] = (b".".join(head).decode("latin-1")[2:60],
                                   tuple(oid_repr(r) for r in refs))
            queue += refs
        return seen

    def quarantined(self, name: str) -> list[str]:
        """The quarantine records (``uvm.quarantine``) of methods held by ``name``."""
        from uvm.registry import Registry

        with self._reading() as conn:
            uuid = Registry(conn.root()).resolve(name)._uuid
            active = conn.root().get("batos.quarantine", {}).get("active", {})
            return [key for key in active if key.startswith(uuid)]

    @contextlib.contextmanager
    def _reading(self) -> Any:
        """A connection to the served image, current with the supervisor's last commit, in
        a transaction that is always aborted."""
        import transaction

        assert self.db is not None
        self.fresh()
        tm = transaction.TransactionManager(explicit=True)
        tm.begin()
        conn = self.db.open(transaction_manager=tm)
        try:
            yield conn
        finally:
            tm.abort()
            conn.close()

    def image_report(self) -> tuple[list[str], str]:
        """(problems of ``verify`` plus the image's self-checks, the graph digest), through the
        same storage the supervisor serves."""
        from uvm.validation import validate_image

        assert self.db is not None
        self.fresh()
        record = validate_image(self.db)
        problems = list(record["failures"])
        return problems, record["digest"]


def _shown(value: Any) -> Any:
    """A slot value as plain data: methods by their whole history, objects by uuid."""
    from uvm.methods import Method
    from uvm.obj import UvmObject

    if isinstance(value, Method):
        return ["method", [(v.get("version"), v.get("author"), v.get("digest"), v.get("reason"),
                            repr(v.get("meta"))) for v in value.versions]]
    if isinstance(value, UvmObject):
        return ["object", value._uuid]
    if isinstance(value, dict) or hasattr(value, "items"):
        return ["map", sorted((repr(k), _shown(v)) for k, v in value.items())]
    if isinstance(value, list | tuple) or type(value).__name__ == "PersistentList":
        return ["list", [_shown(v) for v in value]]
    return [type(value).__name__, repr(value)[:1000]]


@pytest.fixture(scope="module")
def walls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    harness = Walls(tmp_path_factory.mktemp("escapes"))
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A second supervisor whose methods get the real os, socket, subprocess, ctypes."""
    harness = Walls(tmp_path_factory.mktemp("escapes-os"), expose_os=True)
    try:
        yield harness
    finally:
        harness.close()


def still_alive(sup: Supervisor) -> bool:
    return sup.proc is not None and alive(psutil.Process(sup.proc.pid))
