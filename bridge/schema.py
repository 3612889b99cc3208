"""The wire schema as JSON Schema (draft 2020-12), generated from ``bridge.messages``.

``document()`` is one JSON Schema whose ``$defs`` hold every message: ``Request``
(the client's requests, discriminated on ``kind``), ``Reply`` and ``ErrorInfo``,
``Control`` (the backend's control messages between the supervisor and an
incarnation, discriminated on ``kind``) and ``Event``, each message model by its own
name; the document itself accepts any one of the four. ``protocol`` is the protocol's
version ("major.minor"; ``v`` on the wire is the major).

The file beside the normative text, docs/protocol.schema.json, is this output;
``python -m bridge.schema > docs/protocol.schema.json`` regenerates it, and a unit
test (tests/unit/test_protocol_schema.py) fails when the two differ. Pure: reads
the models, writes stdout only when run as a program.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import TypeAdapter

from .messages import PROTOCOL, Control, Event, Reply, Request

__all__ = ["REGENERATE", "document", "text"]

#: the command that rewrites the checked-in schema
REGENERATE = "python -m bridge.schema > docs/protocol.schema.json"

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_PARTS: dict[str, Any] = {"Request": Request, "Reply": Reply, "Control": Control, "Event": Event}


def document() -> dict[str, Any]:
    """The whole schema: the four parts and every model they use, in ``$defs``."""
    defs: dict[str, Any] = {}
    for name, part in _PARTS.items():
        schema = TypeAdapter(part).json_schema(ref_template="#/$defs/{model}")
        for inner, body in schema.pop("$defs", {}).items():
            if defs.setdefault(inner, body) != body:
                raise ValueError(f"two different models are named {inner!r}")
        defs[name] = schema
    return {
        "$schema": DIALECT,
        "title": "batos wire protocol",
        "description": "Every message of the batos wire protocol (docs/protocol.md is the "
                       "normative text; this is generated from bridge/messages.py by "
                       f"`{REGENERATE}`). Messages are msgpack maps; string keys only, no "
                       "extension types.",
        "protocol": PROTOCOL,
        "anyOf": [{"$ref": f"#/$defs/{name}"} for name in _PARTS],
        "$defs": dict(sorted(defs.items())),
    }


def text() -> str:
    """``document()`` as the checked-in file holds it."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(text())
