"""Child for test_crash_safety: commit numbered messages in a loop until killed.

Usage: python crash_writer.py IMAGE

Each ``record:`` message touches several persistent objects at once (a new
registered record object, the name index, the object index, counters on
``crashA`` and ``crashB``, and genesis), so a message present in part would
show. The child resumes from the last committed number + 1, prints
``READY <first>``, then prints each number after its ``Kernel.send`` returns.
"""

from __future__ import annotations

import sys

from uvm import Kernel, UnknownTarget, open_db

RECORD = '''
def record(self, i):
    rec = clone_object(object_named("crashProto"))
    rec.n = i
    name_object(rec, "rec-" + str(i))
    a = object_named("crashA")
    a.count = a.count + 1
    a.last = i
    b = object_named("crashB")
    b.total = b.total + i
    b.last = i
    self.lastRecorded = i
    return i
'''


def ensure_object(k: Kernel, name: str, slots: dict) -> None:
    try:
        k.send(name, "uuid")
        return
    except UnknownTarget:
        pass
    ref = k.send("genesis", "clone")["$ref"]
    for slot, value in slots.items():
        k.send(ref, "setSlot:value:", [slot, value])
    k.send(ref, "registerAs:", [name])  # last: the name marks the object complete


def main() -> int:
    db = open_db(sys.argv[1])
    k = Kernel(db)
    # Objects first (clones of genesis must not copy the record method), then the method.
    ensure_object(k, "crashProto", {"kind": "record"})
    ensure_object(k, "crashA", {"count": 0, "last": 0})
    ensure_object(k, "crashB", {"total": 0, "last": 0})
    if not k.send("genesis", "respondsTo:", ["record:"]):
        k.send("genesis", "defineMethod:source:", ["record:", RECORD.strip() + "\n"])
    i = k.send("crashA", "last") + 1
    print(f"READY {i}", flush=True)
    while True:
        assert k.send("genesis", "record:", [i]) == i
        print(i, flush=True)
        i += 1


if __name__ == "__main__":
    sys.exit(main())
