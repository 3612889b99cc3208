"""The supervisor's fast check of forwarded kinds agrees with pydantic's full validation.

``bridge.codec.check_forwarded`` is hand-written so the supervisor forwards a ``send``
or ``describe`` without building a model; the incarnation validates it fully. For the
client this must be invisible: whatever the fast check accepts pydantic accepts (else the
incarnation, not the supervisor, would answer the error), and whatever it refuses pydantic
refuses with the same type, naming the same field, in the same words. Every map goes
through ``unpack`` first, as on the wire (msgpack bin comes back as bytes, tuples as
lists). A corpus built field by field (missing, each wrong type, empty, at and over its
limit, counted in characters, unknown fields, nesting, two faults at once), then random
maps from hypothesis.
"""

from __future__ import annotations

import itertools
from typing import Any

import ormsgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.codec import Forwarded, check_forwarded, unpack, validate_request
from bridge.errors import InvalidMessage, ProtocolError

_REMOVE = object()
#: values of every wire type, for "the wrong type"
WRONG = [None, 0, 5, -1, 2.5, True, False, b"bytes", [], ["x"], {}, {"a": 1}, [{"a": [1]}]]
#: field -> (min, max) characters, as bridge.messages documents them
LIMITS = {"id": (1, 128), "target": (1, 256), "selector": (1, 256), "author": (0, 64)}


def base(kind: str) -> dict[str, Any]:
    if kind == "send":
        return {"v": 1, "kind": "send", "id": "r-1", "target": "genesis",
                "selector": "printString", "args": [1, "two"], "author": "me"}
    return {"v": 1, "kind": "describe", "id": "r-1", "target": "genesis"}


def variant(kind: str, **fields: Any) -> dict[str, Any]:
    message = base(kind)
    message.update(fields)
    return {k: v for k, v in message.items() if v is not _REMOVE}


def strings(limits: tuple[int, int]) -> list[str]:
    low, high = limits
    sizes = {0, 1, low, max(low - 1, 0), high, high + 1, high * 2}
    # multi-byte characters: the limit counts characters, not UTF-8 bytes
    return [s for n in sorted(sizes) for s in ("x" * n, "é" * n, "✓" * n)]


def corpus() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for kind in ("send", "describe"):
        cases.append((f"{kind} whole", base(kind)))
        fields = ["id", "target"] + (["selector", "args", "author"] if kind == "send" else [])
        for name in fields:
            cases.append((f"{kind} without {name}", variant(kind, **{name: _REMOVE})))
            for value in WRONG:
                cases.append((f"{kind} {name}={value!r}", variant(kind, **{name: value})))
            if name in LIMITS:
                for text in strings(LIMITS[name]):
                    cases.append((f"{kind} {name} of {len(text)} {text[:1]!r}",
                                  variant(kind, **{name: text})))
        if kind == "send":
            for args in ([], [None], [[[[1]]]], [{"a": {"b": {"c": [b"x", 2.5]}}}],
                         list(range(200))):
                cases.append((f"send args {str(args)[:30]}", variant(kind, args=args)))
        else:
            for name in ("selector", "args", "author"):  # send's fields are unknown here
                cases.append((f"describe with {name}", variant(kind, **{name: "x"})))
        for extra in ({"bogus": 1}, {"bogus": {"nested": {"deep": [1]}}}, {"Id": "x"},
                      {"a": 1, "b": 2}, {"": 0}, {"kind2": "send"}, {"args ": []}):
            cases.append((f"{kind} with {list(extra)}", variant(kind, **extra)))
        cases.append((f"{kind} minimal", {"v": 1, "kind": kind, "id": "i"}))
    # two faults at once: pydantic names the first in the model's order, then unknown fields
    faults = {"id": 5, "target": "", "selector": None, "args": "x", "author": 7, "zz": 1,
              "aa": [1]}
    for (one, a), (two, b) in itertools.combinations(faults.items(), 2):
        for kind in ("send", "describe"):
            cases.append((f"{kind} {one} and {two} wrong", variant(kind, **{one: a, two: b})))
            cases.append((f"{kind} {two} and {one} wrong (map order)",
                          {**{two: b}, **variant(kind, **{one: a})}))
    return cases


CORPUS = corpus()


def on_the_wire(message: dict[str, Any]) -> dict[str, Any]:
    return unpack(ormsgpack.packb(message))


def outcome(check: Any, data: dict[str, Any]) -> tuple[str, str, str]:
    """(type, message, request_id) of the refusal; ("ok", "", "") when accepted."""
    try:
        check(data)
    except ProtocolError as exc:
        return type(exc).__name__, str(exc), exc.request_id
    return "ok", "", ""


def agree(message: dict[str, Any]) -> None:
    data = on_the_wire(message)
    fast, full = outcome(check_forwarded, data), outcome(validate_request, data)
    assert fast == full, (message, fast, full)
    if fast[0] == "ok":
        model, seen = validate_request(data), check_forwarded(data)
        assert (seen.kind, seen.id, seen.target, seen.selector) == (
            model.kind, model.id, model.target, getattr(model, "selector", None))
    else:
        assert fast[0] == InvalidMessage.__name__
        named = fast[1].split("'")[1].split(".", 1)[1]  # "field 'send.target': ..."
        assert named in data or named in ("id", "target", "selector") or named == "", fast


def test_the_corpus_is_generous() -> None:
    refused = sum(1 for _, m in CORPUS if outcome(validate_request, on_the_wire(m))[0] != "ok")
    assert len(CORPUS) > 250
    assert 150 < refused < len(CORPUS) - 40  # both answers are well represented


@pytest.mark.parametrize(("what", "message"), CORPUS, ids=[w for w, _ in CORPUS])
def test_the_fast_check_answers_as_pydantic(what: str, message: dict[str, Any]) -> None:
    agree(message)


@pytest.mark.parametrize(("message", "field"), [
    (variant("send", target=_REMOVE), "send.target"),
    (variant("send", target=5), "send.target"),
    (variant("send", selector="s" * 257), "send.selector"),
    (variant("send", args="x"), "send.args"),
    (variant("send", author="a" * 65), "send.author"),
    (variant("send", bogus_field=1), "send.bogus_field"),
    (variant("describe", target="t" * 257), "describe.target"),
    (variant("describe", selector="x"), "describe.selector"),
    (variant("send", id=""), "send.id"),
])
def test_a_refusal_names_its_field_and_echoes_a_valid_id(message: dict[str, Any],
                                                         field: str) -> None:
    with pytest.raises(InvalidMessage, match=f"field '{field}'") as caught:
        check_forwarded(on_the_wire(message))
    valid_id = message.get("id")
    assert caught.value.request_id == (valid_id if valid_id and len(valid_id) <= 128 else "")


def test_what_the_fast_check_accepts_is_what_routing_needs() -> None:
    assert check_forwarded(on_the_wire(base("send"))) == Forwarded(
        "send", "r-1", "genesis", "printString")
    assert check_forwarded(on_the_wire({"v": 1, "kind": "describe", "id": "d"})) == Forwarded(
        "describe", "d", "genesis", None)
    assert check_forwarded(on_the_wire(variant("describe", target="obj"))).target == "obj"


KEYS = st.sampled_from(["v", "id", "target", "selector", "args", "author", "bogus", "Id"])
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
    st.text(max_size=3), st.text(min_size=60, max_size=70), st.text(min_size=125, max_size=130),
    st.text(min_size=255, max_size=258), st.binary(max_size=3),
    st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(-5, 5), max_size=2))


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(["send", "describe"]),
       fields=st.dictionaries(KEYS, VALUES, max_size=6),
       keep=st.dictionaries(st.sampled_from(["id", "target", "selector"]), st.just(True)))
def test_random_maps_agree(kind: str, fields: dict[str, Any], keep: dict[str, bool]) -> None:
    message = {k: v for k, v in base(kind).items() if k in keep or k == "kind"}
    message.update(fields)
    message["v"] = 1  # unpack refuses any other v before either check runs
    agree(message)


@pytest.mark.parametrize("version", [2, 0, "1", None, 1.0, True])
def test_a_version_unpack_would_refuse_is_judged_as_pydantic_judges_it(version: Any) -> None:
    data = variant("send", v=version)  # not through unpack: the check alone
    assert outcome(check_forwarded, data) == outcome(validate_request, data)
