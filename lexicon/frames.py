"""The tags of the backend's frames, between the supervisor and an incarnation.

docs/protocol.md, "Backend": after the routing identity, every multipart
message's first frame is one of these tags.

    supervisor -> incarnation   [REQUEST, request]  or  [CONTROL, control]
    incarnation -> supervisor   [REPLY, id, reply]  or  [CONTROL, control]
"""

from __future__ import annotations

__all__ = ["CONTROL", "REPLY", "REQUEST", "TAGS"]

#: a client's request, forwarded to the incarnation that will run it
REQUEST = b"Q"
#: an incarnation's reply to one request: followed by the request id and the reply
REPLY = b"R"
#: a control message (Ready, Heartbeat, Stop, Validate, Publish, ...), either way
CONTROL = b"C"

TAGS = frozenset({REQUEST, REPLY, CONTROL})
