"""What the walls of issue 11 cost on the read path: this tree against the tree before them.

The budget watchdog, the capability namespace, the structural guards, the class
allowlist on load and the connection ownership all sit on a message's path. This
script measures the same read-only messages in two source trees, each in its own
child process on its own FileStorage image, alternating rounds:

* ``before``: the commit before the walls (``--before``, default ``e7f1bf2``),
  checked out with ``git worktree`` into a temp folder;
* ``after``: this tree.

In each child, every message is measured beside a raw ZODB read of the same
object (open a connection, read the attribute, abort, close) timed in the same
rounds: the figure compared across trees is the ratio message / raw read, which
cancels most of the machine's noise. Messages:

The raw read goes through plain ZODB (a ``ZODB.DB`` on the same file, read-only),
so what batos's own database wrapper adds is counted as overhead.

* ``read slot``: ``Kernel.send(obj, "n")`` (a data slot, no method code);
* ``read method``: ``getN`` (``return self.n``: method code, guards on ``self.n``);
* ``read capability``: ``root`` (``import math`` then ``math.sqrt(self.n)``: the
  import and the namespace on every call).

Overhead = after ratio / before ratio - 1. Goal: <= 5% on the read path.

Then, in this tree only, the walls one at a time (``ablate``): the same ``read slot``
message with each piece switched off in turn (the budget's enter/leave, the per-message
decimal/random scope, the connection ownership, the class allowlist's ``ImageDB``),
alternating rounds, each against the shipped path: what each wall costs per message.

Run ``python bench/bench_walls.py [--rounds N] [--messages M] [--before REV]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

METHODS = {
    "getN": "def getN(self):\n    return self.n\n",
    "root": "def root(self):\n    import math\n    return math.sqrt(self.n)\n",
}
CASES = {"read slot": "n", "read method": "getN", "read capability": "root"}

# The child: run from the tree under test (its path first on sys.path), print JSON.
CHILD = r'''
import json, os, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import transaction
from uvm import Kernel, UvmObject, bootstrap, open_db

methods = json.loads(sys.argv[2]); cases = json.loads(sys.argv[3])
messages, rounds = int(sys.argv[4]), int(sys.argv[5])
home = tempfile.mkdtemp(prefix="bench-walls-")
db = open_db(os.path.join(home, "image.fs"))
bootstrap(db)
kernel = Kernel(db)
created = kernel.send("genesis", "clone", [])
uuid = created["$ref"]
kernel.send(uuid, "setSlot:value:", ["n", 4])
for selector, source in methods.items():
    kernel.send(uuid, "defineMethod:source:", [selector, source])
tm = transaction.TransactionManager(explicit=True)
tm.begin(); conn = db.open(transaction_manager=tm)
oid = conn.root()["batos.objects"][uuid]._p_oid
tm.abort(); conn.close()
# the baseline reads through plain ZODB (no batos class allowlist or connection hooks),
# on the same file opened read-only beside the image
import ZODB
from ZODB.FileStorage import FileStorage
plain = ZODB.DB(FileStorage(os.path.join(home, "image.fs"), read_only=True))

def raw():
    tm = transaction.TransactionManager(explicit=True)
    tm.begin()
    c = plain.open(transaction_manager=tm)
    try:
        c.get(oid).n
        tm.abort()
    finally:
        c.close()

def timed(fn):
    start = time.process_time()
    for _ in range(messages):
        fn()
    return (time.process_time() - start) / messages * 1e6

for selector in cases.values():
    assert kernel.send(uuid, selector, []) in (4, 2.0), selector
out = {name: [] for name in ["raw read", *cases]}
for _ in range(rounds):
    out["raw read"].append(timed(raw))
    for name, selector in cases.items():
        out[name].append(timed(lambda s=selector: kernel.send(uuid, s, [])))
import uvm
assert uvm.__file__.startswith(sys.argv[1]), uvm.__file__
print(json.dumps(out))
db.close()
plain.close()
'''


def run_child(tree: Path, messages: int, rounds: int) -> dict[str, list[float]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), json.dumps(METHODS), json.dumps(CASES),
         str(messages), str(rounds)],
        capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env, timeout=900,
    )
    if proc.returncode:
        raise SystemExit(f"child in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


ABLATE = r'''
import contextvars, json, os, sys, tempfile, time
import ZODB
from ZODB.FileStorage import FileStorage
import uvm.dispatch as D, uvm.kernel as K
from uvm import Kernel, bootstrap, budget, open_db
from uvm.dispatch import _reply_size, _scoped, dispatch
from uvm.message_scope import enter_message
from uvm.values import to_plain

messages, rounds = int(sys.argv[1]), int(sys.argv[2])
home = tempfile.mkdtemp(prefix="bench-walls-ablate-")
path = os.path.join(home, "image.fs")
db = open_db(path)
bootstrap(db)
setup = Kernel(db)
uuid = setup.send("genesis", "clone", [])["$ref"]
setup.send(uuid, "setSlot:value:", ["n", 4])
db.close()

def no_budget(receiver, selector, args, *, limits, request_id=None, max_reply_bytes=0):
    return contextvars.copy_context().run(_scoped, receiver, selector, args, max_reply_bytes)

def no_scope(receiver, selector, args, *, limits, request_id=None, max_reply_bytes=0):
    slot = budget.enter(limits, request_id)
    try:
        result = to_plain(dispatch(receiver, selector, args))
        _reply_size(result, max_reply_bytes)
        budget.leave(slot)
    except BaseException as exc:
        budget.fail(slot, type(exc))
        raise
    return result

shipped_run, shipped_guard = K.run_message, K.guard
image = open_db(path, read_only=True)
plain = ZODB.DB(FileStorage(path, read_only=True))
variants = {}
variants["all walls"] = (Kernel(image), shipped_run)
variants["no budget"] = (variants["all walls"][0], no_budget)
variants["no message scope"] = (variants["all walls"][0], no_scope)
K.guard = lambda db: None
variants["no ownership, no class allowlist"] = (Kernel(plain), shipped_run)
K.guard = shipped_guard
variants["no class allowlist"] = (Kernel(ZODB.DB(FileStorage(path, read_only=True))), shipped_run)

def timed(kernel):
    start = time.process_time()
    for _ in range(messages):
        kernel.send(uuid, "n", [])
    return (time.process_time() - start) / messages * 1e6

out = {name: [] for name in variants}
for _ in range(rounds):
    for name, (kernel, run) in variants.items():
        K.run_message = run
        kernel.send(uuid, "n", [])
        out[name].append(timed(kernel))
K.run_message = shipped_run
print(json.dumps(out))
'''


def ablate(messages: int, rounds: int) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATOS_")}
    proc = subprocess.run([sys.executable, "-c", ABLATE, str(messages), str(rounds)],
                          capture_output=True, text=True, env=env, timeout=900, cwd=str(ROOT))
    if proc.returncode:
        raise SystemExit(f"ablation failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.splitlines()[-1])
    base = min(out["all walls"])
    print(f"\nablate (this tree, read slot, {rounds} rounds x {messages} messages; CPU us, best)")
    print(f"{'variant':<36}{'us':>8}{'saves':>9}")
    for name, values in out.items():
        best = min(values)
        print(f"{name:<36}{best:>8.1f}{(base - best) / base * 100:>+8.1f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="e7f1bf2", help="the tree before the walls")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per child")
    parser.add_argument("--messages", type=int, default=2000, help="messages per case per round")
    parser.add_argument("--children", type=int, default=3, help="child runs per tree, alternating")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_kernel import machine  # noqa: PLC0415 - the bench folder is not a package

    work = Path(tempfile.mkdtemp(prefix="bench-walls-tree-"))
    before = work / "before"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before),
                    args.before], check=True, capture_output=True)
    try:
        samples: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
        for _ in range(args.children):
            for label, tree in (("before", before), ("after", ROOT)):
                for name, values in run_child(tree, args.messages, args.rounds).items():
                    samples[label].setdefault(name, []).extend(values)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print("\n".join(machine()))
    print(f"before = {args.before}, after = this tree; {args.children} children x "
          f"{args.rounds} rounds x {args.messages} messages; CPU us per message (best)")
    print(f"{'case':<18}{'before us':>10}{'after us':>10}{'before/raw':>12}{'after/raw':>11}"
          f"{'overhead':>10}")
    for name in ["raw read", *CASES]:
        b, a = min(samples["before"][name]), min(samples["after"][name])
        rb = b / min(samples["before"]["raw read"])
        ra = a / min(samples["after"]["raw read"])
        med = statistics.median(
            (x / r) for x, r in zip(samples["after"][name], samples["after"]["raw read"], strict=True)
        ) / statistics.median(
            (x / r) for x, r in zip(samples["before"][name], samples["before"]["raw read"],
                                    strict=True)
        )
        print(f"{name:<18}{b:>10.1f}{a:>10.1f}{rb:>12.2f}{ra:>11.2f}"
              f"{(ra / rb - 1) * 100:>+9.1f}%  (median of rounds {(med - 1) * 100:+.1f}%)")
    ablate(args.messages, args.rounds * args.children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
