"""Every request kind answers with its documented reply (docs/protocol.md, "Requests").

``evolve`` and ``rollback`` are asked here only what the server must refuse before it
builds anything (``InvalidRequest``): a package to remove that is not there, a
requirement that does not parse, one name both added and removed, an env that does not
exist. Not even an evolve with no changes: it hands over when the project's build files
changed since the env was built (the spec is then not the one serving). ``unchanged``
and real handovers are ``check_handover``'s, only with ``--evolve-requirement``.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from .context import Context
from .registry import check, require
from .shapes import expect_error, expect_ok, short
from .wire import pack, request

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
STATUS_KEYS = ("state", "reason", "supervisor", "active", "incarnations", "env", "routing",
               "poisoned", "quarantined", "restarts", "zeo", "handover", "served",
               "handover_log", "confinement")
STATES = ("starting", "serving", "restarting", "degraded", "stopping")
SLOT_KINDS = ("parent", "method", "object", "nil", "list", "dict", "str", "int", "float", "bool",
              "bytes")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@check("reachable", "1.1 Sockets")
def reachable(ctx: Context) -> str:
    """A ``ping`` from a plain DEALER gets a reply carrying its id (its shape is ``ping``'s
    to judge; with no reply at all, nothing else can run)."""
    ctx.ask("ping")
    return f"{ctx.options.endpoint} answers"


@check("ping", "3.4 ping")
def ping(ctx: Context) -> str:
    """``ping`` answers ``{pong: true, pid, uptime, state, protocol}`` (protocol 1.x)."""
    result = ctx.call("ping")
    require(isinstance(result, dict), f"ping answers a map, got {short(result)}")
    require(result.get("pong") is True, f"pong is true, got {short(result.get('pong'))}")
    require(isinstance(result.get("pid"), int) and not isinstance(result.get("pid"), bool),
            f"pid is an integer, got {short(result.get('pid'))}")
    require(_number(result.get("uptime")) and result["uptime"] >= 0,
            f"uptime is seconds, got {short(result.get('uptime'))}")
    require(result.get("state") in STATES, f"state is one of {STATES}, got "
            f"{short(result.get('state'))}")
    protocol = result.get("protocol")
    require(isinstance(protocol, str) and protocol.split(".")[0] == "1",
            f"protocol is the full version, 1.x, got {short(protocol)}")
    return f"state {result['state']}, protocol {protocol}"


@check("status", "3.3 status")
def status(ctx: Context) -> str:
    """``status`` answers a map with the documented keys (state, incarnations, routing, ...)."""
    result = ctx.status()
    missing = [key for key in STATUS_KEYS if key not in result]
    require(not missing, f"status lacks {missing} (has {sorted(result)})")
    require(isinstance(result["incarnations"], list)
            and all(isinstance(i, dict) for i in result["incarnations"]),
            f"incarnations is a list of maps, got {short(result['incarnations'])}")
    require(isinstance(result["routing"], dict),
            f"routing is a map, got {short(result['routing'])}")
    require(isinstance(result["poisoned"], list),
            f"poisoned is a list, got {short(result['poisoned'])}")
    quarantined = result["quarantined"]
    require(quarantined is None or (isinstance(quarantined, dict)
                                    and isinstance(quarantined.get("methods"), list)),
            f"quarantined is {{reported_by, count, methods: [...], ago}} or nil, got "
            f"{short(quarantined)}")
    require(result["state"] in STATES, f"state is one of {STATES}, got {short(result['state'])}")
    supervisor = result["supervisor"]
    require(isinstance(supervisor, dict) and isinstance(supervisor.get("endpoints"), list)
            and isinstance(supervisor.get("events"), str),
            f"supervisor is {{pid, uptime, home, endpoints, events, curve}}, got "
            f"{short(supervisor)}")
    return f"state {result['state']}, {len(result['incarnations'])} incarnation(s)"


@check("describe", "3.2 describe")
def describe(ctx: Context) -> str:
    """``describe`` without a target describes ``genesis``: ``{uuid, names, slots}``."""
    default = ctx.call("describe")
    named = ctx.call("describe", target="genesis")
    for result in (default, named):
        require(isinstance(result, dict) and {"uuid", "names", "slots"} <= set(result),
                f"describe answers {{uuid, names, slots}}, got {short(result)}")
        require(isinstance(result["uuid"], str) and UUID.match(result["uuid"]),
                f"uuid is 8-4-4-4-12 hex, got {short(result['uuid'])}")
        require(isinstance(result["names"], list) and "genesis" in result["names"],
                f"genesis's names include 'genesis', got {short(result['names'])}")
        require(isinstance(result["slots"], dict), f"slots is a map, got {short(result['slots'])}")
        for slot, entry in result["slots"].items():
            require(isinstance(entry, dict) and entry.get("kind") in SLOT_KINDS,
                    f"slot {slot!r}: kind is one of {SLOT_KINDS}, got {short(entry)}")
            if entry["kind"] == "method":
                require(isinstance(entry.get("version"), int)
                        and isinstance(entry.get("selector"), str),
                        f"method slot {slot!r} has version and selector, got {short(entry)}")
    require(default["uuid"] == named["uuid"],
            f"the default target is genesis: {default['uuid']} != {named['uuid']}")
    return f"genesis is {named['uuid']} with {len(named['slots'])} slot(s)"


@check("send", "3.1 send")
def send(ctx: Context) -> str:
    """``send`` runs a message: ``args`` defaults to []; ``author`` is taken."""
    rid, reply = ctx.ask("send", target="genesis", selector="printString")
    text = expect_ok(reply, rid, "send genesis printString (no args field)")
    require(isinstance(text, str) and text, f"printString answers a string, got {short(text)}")
    rid, reply = ctx.ask("send", target="genesis", selector="respondsTo:", args=["clone"],
                         author="conformance")
    answer = expect_ok(reply, rid, "send genesis respondsTo: 'clone'")
    require(answer is True, f"genesis respondsTo: 'clone' answers true, got {short(answer)}")
    return f"printString -> {short(text, 60)}"


@check("values", "7.4 Values")
def values(ctx: Context) -> str:
    """Every value kind survives a slot round trip; references come back as ``{$ref: uuid}``."""
    name = ctx.make_object("values")
    genesis = ctx.call("describe")["uuid"]
    samples: dict[str, Any] = {
        "nil": None, "true": True, "false": False, "int": -(2 ** 40), "int64_max": 2 ** 63 - 1,
        "int64_min": -(2 ** 63), "float": 2.5,
        "str": "héllo ✓", "bytes": b"\x00\xffbytes", "list": [1, "two", [3.0]],
        "map": {"a": 1, "b": {"c": [None]}},
    }
    for slot, value in samples.items():
        ctx.image(name, "setSlot:value:", slot, value)
        back = ctx.image(name, slot)
        require(back == value and type(back) is type(value),
                f"slot {slot}: set {short(value)}, read back {short(back)}")
    ctx.image(name, "setSlot:value:", "ref", {"$ref": "genesis"})
    back = ctx.image(name, "ref")
    require(back == {"$ref": genesis}, f"a reference reads back as {{'$ref': {genesis!r}}} "
            f"(its uuid), got {short(back)}")
    # a float 32 on the wire (ormsgpack writes float 64 only: the bytes are spliced in)
    marker = "conformance-float32-marker"
    message = request("send", target=name, selector="setSlot:value:", args=["f32", marker])
    frame = pack(message).replace(pack(marker), b"\xca" + struct.pack(">f", 1.5))
    reply = ctx.conn.ask_raw(frame, message["id"])
    expect_ok(reply, message["id"], "setSlot:value: with a float 32")
    back = ctx.image(name, "f32")
    require(back == 1.5 and isinstance(back, float),
            f"a float 32 reads back as 1.5, got {short(back)}")
    return f"{len(samples) + 2} value kinds round-tripped"


@check("handovers", "3.7 handovers")
def handovers(ctx: Context) -> str:
    """``handovers`` answers ``{handovers: [rows], verify}``; ``verify`` checks the chain."""
    plain = ctx.call("handovers")
    require(isinstance(plain, dict) and isinstance(plain.get("handovers"), list),
            f"handovers answers {{handovers: [...], verify}}, got {short(plain)}")
    for row in plain["handovers"]:
        require(isinstance(row, dict) and {"handover", "kind", "outcome"} <= set(row),
                f"a handover row has handover, kind, outcome: {short(row)}")
    checked = ctx.call("handovers", verify=True, last=1)
    require(isinstance(checked, dict) and isinstance(checked.get("handovers"), list),
            f"handovers (verify, last 1) answers a map, got {short(checked)}")
    require(len(checked["handovers"]) <= 1, f"last: 1 gives at most one row, got "
            f"{len(checked['handovers'])}")
    verify = checked.get("verify")
    require(isinstance(verify, dict) and isinstance(verify.get("ok"), bool),
            f"verify: true answers the chain check {{ok, ...}}, got {short(verify)}")
    require(verify["ok"], f"the handover log's chain does not verify: {short(verify)}")
    return f"{len(plain['handovers'])} handover(s), chain ok"


@check("evolve-invalid", "3.5 evolve")
def evolve_invalid(ctx: Context) -> str:
    """``evolve`` removing a package that is not there, adding a requirement that does not
    parse, or adding and removing one name is ``InvalidRequest`` (and starts nothing)."""
    absent = f"conformance-absent-{ctx.tag}"
    for fields in ({"remove": [absent]}, {"add": ["(( not a requirement"]},
                   {"add": [f"{absent}==1.0"], "remove": [absent]}):
        rid, reply = ctx.ask("evolve", who="conformance", **fields)
        expect_error(reply, "InvalidRequest", rid=rid, what=f"evolve {fields}", where="supervisor")
    return "InvalidRequest for each"


@check("rollback-invalid", "3.6 rollback")
def rollback_invalid(ctx: Context) -> str:
    """``rollback`` to an env that does not exist is ``InvalidRequest`` (and starts nothing)."""
    env_id = f"conformance-no-env-{ctx.tag}"
    rid, reply = ctx.ask("rollback", env_id=env_id, who="conformance")
    err = expect_error(reply, "InvalidRequest", rid=rid, what=f"rollback to {env_id!r}",
                       where="supervisor")
    return short(err["message"], 120)


@check("unknown-kind", "3 Requests")
def unknown_kind(ctx: Context) -> str:
    """A request of a kind the spec does not list is ``InvalidMessage`` naming ``kind``."""
    rid, reply = ctx.ask("conformance_no_such_kind")
    expect_error(reply, "InvalidMessage", rid=rid, what="kind 'conformance_no_such_kind'",
                 mentions=("kind",), where="supervisor")
    return "InvalidMessage"

