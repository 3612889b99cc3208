"""What the per-message budget costs on the read path.

``python bench/bench_budget.py [--rounds N] [--messages M]``

One FileStorage image in a temp dir, one ``Kernel``, one trivial read-only
message (``genesis one``, a method answering 1) sent M times per round. Each
round times it twice, alternating: **with** the budget (``uvm.dispatch.run_message``
as shipped: the budget scope around dispatch, the watchdog thread ticking) and
**without** (the same function minus the scope). The watchdog thread keeps
running in both (it is process-wide); its ticks are part of the cost measured.
A second figure isolates the budget's own work per message (``uvm.budget.enter`` +
``leave``, best of 7 timeit runs), which the end-to-end ratio, a small difference of
two noisy numbers, cannot resolve below a few percent on a busy machine.
Times are the process's CPU time (all its threads, the watchdog's included), less
disturbed by other processes than wall time. Prints the best per-message time of
each and the ratios (of the minima, and the median of the per-round ratios), so a
busy machine's noise shows as a spread.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvm.kernel as kernel_module  # noqa: E402
from uvm import Kernel, bootstrap, open_db  # noqa: E402
from uvm.budget import Limits, enter, leave  # noqa: E402
from uvm.dispatch import _reply_size, dispatch  # noqa: E402
from uvm.values import to_plain  # noqa: E402

SHIPPED = kernel_module.run_message


def unbudgeted(receiver, selector, args, *, limits, request_id=None, max_reply_bytes=0):
    result = to_plain(dispatch(receiver, selector, args))
    _reply_size(result, max_reply_bytes)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = open_db(os.path.join(folder, "bench.fs"))
        try:
            bootstrap(db)
            kernel = Kernel(db)
            kernel.send("genesis", "defineMethod:source:", ["one", "def one(self):\n    return 1\n"])

            def run(n: int) -> float:
                # process CPU time: the watchdog thread's share is counted, and other
                # processes on a shared machine disturb it far less than wall time
                started = time.process_time()
                for _ in range(n):
                    kernel.send("genesis", "one")
                return (time.process_time() - started) / n * 1e6

            run(1000)  # warm caches and the compile cache
            with_budget, without, ratios = [], [], []
            for i in range(args.rounds):
                order = (SHIPPED, unbudgeted) if i % 2 == 0 else (unbudgeted, SHIPPED)
                timed = {}
                for variant in order:  # alternate which goes first: no order bias
                    kernel_module.run_message = variant
                    timed[variant] = run(args.messages)
                a, b = timed[SHIPPED], timed[unbudgeted]
                with_budget.append(a)
                without.append(b)
                ratios.append(a / b)
            kernel_module.run_message = SHIPPED
        finally:
            db.close()
    best_with, best_without = min(with_budget), min(without)
    print(f"read path, {args.rounds} rounds x {args.messages} messages, load "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  with the budget:    {best_with:7.2f} us CPU/message (best round)")
    print(f"  without the budget: {best_without:7.2f} us CPU/message (best round)")
    print(f"  overhead: {100 * (best_with / best_without - 1):+.1f}% of the minima, "
          f"{100 * (statistics.median(ratios) - 1):+.1f}% median of per-round ratios "
          f"(quartiles {100 * (statistics.quantiles(ratios, n=4)[0] - 1):+.1f}% .. "
          f"{100 * (statistics.quantiles(ratios, n=4)[2] - 1):+.1f}%)")
    limits = Limits()

    def scoped() -> None:
        leave(enter(limits, "r"))

    net = min(timeit.repeat(scoped, number=100_000, repeat=7, timer=time.process_time)) * 10
    print(f"  the budget's own work: {net * 1000:.0f} ns/message "
          f"({100 * net / best_without:.1f}% of the unbudgeted message)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
