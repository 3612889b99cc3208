"""The bridge: the wire protocol every client and incarnation speaks.

Not built yet (issue 3): pydantic message models in ``bridge/messages.py``, a
separate msgpack codec, and ``bridge.Client``. Imports nothing of ``uvm``.
"""
