"""The Composite Entropy Metric on scripted images (uvm.entropy)."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from uvm import BadArguments, Kernel
from uvm.entropy import DEFAULT_WEIGHTS, composite_entropy, normalized_entropy
from uvm.obj import UvmObject
from uvm.records import SynthesisLog, new_record_id

NOW = time.time()


def add_records(kernel: Kernel, facets: list[str], *, at: float) -> None:
    def write(cycle: Any) -> None:
        log = SynthesisLog(cycle.connection.root())
        for facet in facets:
            log.add({"id": new_record_id(at), "timestamp": at, "facet": facet,
                     "selector": "x", "outcome": "installed"})
    kernel.write(write, note="scripted synthesis records")


def cem(kernel: Kernel, **options: Any) -> dict[str, Any]:
    options.setdefault("now", NOW)
    return kernel.read(lambda cycle: composite_entropy(cycle.connection.root(), **options))


def test_normalized_entropy_bounds():
    assert normalized_entropy([]) == 0
    assert normalized_entropy([5]) == 0
    assert normalized_entropy([3, 0, 0], 3) == 0
    assert normalized_entropy([2, 2, 2]) == pytest.approx(1)
    assert normalized_entropy([1, 1], 4) == pytest.approx(math.log(2) / math.log(4))
    assert 0 < normalized_entropy([9, 1]) < 1


def test_uniform_facet_usage_is_full_cognitive_diversity(kernel):
    add_records(kernel, ["code generation", "persona response", "function calling"] * 2,
                at=NOW - 10)
    report = cem(kernel)
    assert report["h_cog"] == pytest.approx(1)
    assert report["counts"]["facet_usage"] == {"code generation": 2, "function calling": 2,
                                               "persona response": 2}
    assert report["counts"]["synthesis_records_in_window"] == 6


def test_a_single_facet_has_no_cognitive_diversity(kernel):
    add_records(kernel, ["code generation"] * 5, at=NOW - 10)
    assert cem(kernel)["h_cog"] == 0


def test_records_outside_the_window_do_not_count(kernel):
    add_records(kernel, ["old facet"] * 4, at=NOW - 7200)
    add_records(kernel, ["code generation", "persona response"], at=NOW - 10)
    report = cem(kernel, window_seconds=3600)
    assert report["counts"]["facet_usage"] == {"code generation": 1, "persona response": 1}
    assert report["h_cog"] == pytest.approx(1)
    wide = cem(kernel, window_seconds=3 * 3600)
    assert wide["counts"]["facet_usage"]["old facet"] == 4
    assert wide["h_cog"] < 1


def test_facets_the_weaver_knows_but_nobody_used_lower_diversity(kernel):
    for facet in ["a", "b", "c", "d"]:
        kernel.send("weaver", "facetObject:", [facet])
    add_records(kernel, ["a", "b"], at=NOW - 10)
    report = cem(kernel)
    assert report["counts"]["facets_known"] == ["a", "b", "c", "d"]
    assert report["h_cog"] == pytest.approx(math.log(2) / math.log(4))


def test_new_methods_raise_novelty_and_genesis_methods_are_not_new(kernel):
    fresh = cem(kernel)
    assert fresh["novelty"] == 0  # every version so far was written by the bootstrap
    total = fresh["counts"]["method_versions"]
    kernel.send("genesis", "defineMethod:source:", ["one", "def one(self):\n    return 1\n"])
    kernel.send("genesis", "defineMethod:source:", ["one", "def one(self):\n    return 2\n"])
    report = cem(kernel, now=time.time())
    assert report["counts"]["new_method_versions"] == 2
    assert report["counts"]["method_versions"] == total + 2
    assert report["novelty"] == pytest.approx(2 / (total + 2), abs=1e-6)
    later = cem(kernel, now=time.time() + 7200)
    assert later["novelty"] == 0


def test_structure_is_in_range_and_falls_when_slots_pile_up_in_one_object(kernel):
    base = cem(kernel)
    assert 0 <= base["structure"] <= 1
    assert 0 <= base["cem"] <= 1
    slots = {f"s{i}": i for i in range(300)}
    kernel.send("genesis", "applyActs:", [[{"action": "CLONE_PROTOTYPE", "target": "genesis",
                                            "name": "heap", "slots": slots}]])
    piled = cem(kernel)
    assert piled["detail"]["structure_slots"] < base["detail"]["structure_slots"]
    assert piled["counts"]["objects"] == base["counts"]["objects"] + 1


def test_cem_is_the_weighted_sum_of_its_parts(kernel):
    add_records(kernel, ["a", "b", "a"], at=NOW - 10)
    report = cem(kernel)
    assert report["weights"] == DEFAULT_WEIGHTS
    expected = sum(DEFAULT_WEIGHTS[k] * report[k] for k in DEFAULT_WEIGHTS)
    assert report["cem"] == pytest.approx(expected, abs=1e-5)
    only_structure = cem(kernel, weights={"h_cog": 0, "structure": 2, "novelty": 0})
    assert only_structure["weights"]["structure"] == 1
    assert only_structure["cem"] == pytest.approx(report["structure"], abs=1e-6)


@pytest.mark.parametrize("options", [
    {"window_seconds": 0}, {"window_seconds": -5}, {"window_seconds": True},
    {"weights": {"h_cog": 1}}, {"weights": {"h_cog": -1, "structure": 1, "novelty": 1}},
    {"weights": {"h_cog": 0, "structure": 0, "novelty": 0}},
])
def test_bad_windows_and_weights_are_refused(kernel, options):
    with pytest.raises(BadArguments):
        cem(kernel, **options)


def test_any_object_answers_entropy_without_writing(kernel, db):
    before = db.storage.lastTransaction()
    report = kernel.send("genesis", "entropy", [])
    assert set(report) >= {"cem", "h_cog", "structure", "novelty", "weights", "counts"}
    assert kernel.send("true", "entropyOver:", [60])["window_seconds"] == 60
    assert db.storage.lastTransaction() == before


def test_many_objects_are_counted_in_one_pass(kernel):
    def populate(cycle: Any) -> None:
        traits = cycle.registry.resolve("traits")
        for i in range(2000):
            cycle.registry.register(UvmObject({"parent*": traits, "n": i, "m": i}))
    kernel.write(populate, note="2000 objects")
    started = time.monotonic()
    report = kernel.send("genesis", "entropy", [])
    took = time.monotonic() - started
    assert report["counts"]["objects"] >= 2000
    assert took < 10, f"entropy over 2000 objects took {took:.2f}s"
