"""The tables of bench_bridge: rates and latencies, CPU per message of each process, targets.

A case's runs arrive as ``(Result, cpu)`` per round: ``Result`` from the case's run and
``cpu`` the user+system seconds per message of each role's processes in that round
(``ROLES``). Rates compare best against best; latencies pool the rounds; CPU is the median
over the rounds. The targets are issue 14's, as worded there.
"""

from __future__ import annotations

import statistics

from bridge_baselines import Result

WINDOW = 32
ZEO_THREADS = 4
#: the process roles of a case's path, in column order: (key, header)
ROLES = (("client", "client"), ("front", "broker|sup"), ("back", "worker|inc"), ("zeo", "zeo"))
Runs = dict[str, list[tuple[Result, dict[str, float]]]]
#: a target: its wording, (case, baseline) pairs that must all meet it, the ratio
TARGETS: list[tuple[str, list[tuple[str, str]], float]] = [
    ("read seq >= 60% of the raw 3-hop echo", [("batos read seq", "echo seq")], 0.60),
    ("read seq >= 85% of the echo-with-ZODB-read",
     [("batos read seq", "echo zodb seq")], 0.85),
    (f"read with {WINDOW} outstanding >= 35% of the raw echo with {WINDOW} outstanding",
     [(f"batos read w{WINDOW}", f"echo w{WINDOW}")], 0.35),
    ("write seq >= 80% of raw ZEO commits at the same concurrency",
     [("batos write hot seq", "zeo commit seq"), ("batos write spread seq", "zeo commit seq")],
     0.80),
    (f"write with {ZEO_THREADS}+ outstanding >= 80% of raw ZEO commits at the same concurrency",
     [(f"batos write spread w{WINDOW}", f"zeo commit x{ZEO_THREADS}")], 0.80),
]
#: the baseline shown beside a case in the rates table (the targets' and the hot window's)
SHARES = {case: base for _what, pairs, _goal in TARGETS for case, base in pairs} | {
    "echo zodb seq": "echo seq", f"echo zodb w{WINDOW}": f"echo w{WINDOW}",
    f"batos write hot w{WINDOW}": f"zeo commit x{ZEO_THREADS}",
}
TAIL_CASE, TAIL_RATIO = "batos read seq", 2.0  # p99 of a read seq <= 2x its p50


def percentiles(runs: list[tuple[Result, dict[str, float]]]) -> tuple[float, float]:
    lat = sorted(x for r, _cpu in runs for x in r[2])
    if not lat:
        return float("nan"), float("nan")
    p50, p99 = (lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 for q in (0.5, 0.99))
    return p50, p99


def report(results: Runs) -> None:
    rates = {name: [r[0] / r[1] for r, _cpu in rs] for name, rs in results.items()}
    best = {name: max(r) for name, r in rates.items()}
    tails = {name: percentiles(rs) for name, rs in results.items()}
    cpu = {name: {key: statistics.median(c.get(key, 0.0) for _r, c in rs) * 1e6
                  for key, _header in ROLES} for name, rs in results.items()}
    print(f"{'case':<24}{'best/s':>8}{'median/s':>9}{'p50 ms':>8}{'p99 ms':>8}{'cpu ms':>8}"
          f"{'errors':>7}  best as a share of the baseline's best")
    for name, rs in results.items():
        base = SHARES.get(name)
        share = f"{best[name] / best[base]:6.1%} of {base}" if base in best else ""
        p50, p99 = tails[name]
        print(f"{name:<24}{best[name]:>8.0f}{statistics.median(rates[name]):>9.0f}{p50:>8.2f}"
              f"{p99:>8.2f}{sum(cpu[name].values()) / 1e3:>8.2f}"
              f"{sum(r[3] for r, _cpu in rs):>7}  {share}")
    print("\nCPU per message, us (user+system, median of the rounds; '-': not on the path)")
    print(f"{'case':<24}" + "".join(f"{header:>12}" for _key, header in ROLES) + f"{'total':>9}")
    for name, rs in results.items():
        on_path = {key for _r, c in rs for key in c}
        cells = "".join(f"{cpu[name][key]:>12.0f}" if key in on_path else f"{'-':>12}"
                        for key, _header in ROLES)
        print(f"{name:<24}{cells}{sum(cpu[name].values()):>9.0f}")
    print("\ntargets (issue 14; rates best against best):")
    for what, pairs, goal in TARGETS:
        present = [(c, b) for c, b in pairs if c in best and b in best]
        shares = [(c, b, best[c] / best[b]) for c, b in present]
        verdict = "met" if shares and all(s >= goal for *_cb, s in shares) else "NOT met"
        detail = ", ".join(f"{c} {best[c]:.0f}/s = {s:.1%} of {b} {best[b]:.0f}/s"
                           for c, b, s in shares)
        print(f"  {what}: {verdict} ({detail})")
    p50, p99 = tails.get(TAIL_CASE, (float("nan"), float("nan")))
    verdict = "met" if p99 <= TAIL_RATIO * p50 else "NOT met"
    print(f"  p99 of a read seq <= {TAIL_RATIO:g}x its p50: {verdict} ({TAIL_CASE} p50 "
          f"{p50:.2f} ms, p99 {p99:.2f} ms = {p99 / p50:.2f}x)")
    print(f"  (batos write hot w{WINDOW} is shown, not a target: its writes conflict on one "
          "object, the raw commits do not)")
