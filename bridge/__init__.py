"""The bridge: the wire protocol every client, the supervisor and incarnations speak.

``bridge.messages`` is the whole schema, ``bridge.codec`` its msgpack encoding
(``bridge.wire_values``: which values it carries), ``bridge.schema`` the schema as
JSON Schema, ``bridge.client.Client`` the Python client. Imports nothing of the UVM,
the supervisor or the mind: everything crosses process boundaries here.
"""

from .client import DEFAULT_ENDPOINT, Client, default_endpoint, new_request_id
from .errors import (
    BridgeError,
    FrameTooLarge,
    InvalidMessage,
    InvalidValue,
    MalformedFrame,
    ProtocolError,
    RemoteError,
    Timeout,
    TransientError,
    UnsupportedVersion,
)
from .messages import PROTOCOL, PROTOCOL_VERSION

__all__ = [
    "DEFAULT_ENDPOINT",
    "PROTOCOL",
    "PROTOCOL_VERSION",
    "BridgeError",
    "Client",
    "FrameTooLarge",
    "InvalidMessage",
    "InvalidValue",
    "MalformedFrame",
    "ProtocolError",
    "RemoteError",
    "Timeout",
    "TransientError",
    "UnsupportedVersion",
    "default_endpoint",
    "new_request_id",
]
