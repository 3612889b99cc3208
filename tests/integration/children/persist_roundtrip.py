"""Child for test_processes: write an image in one process, read it back in another.

Usage: python persist_roundtrip.py write IMAGE   -> prints {"uuid": <widget uuid>}
       python persist_roundtrip.py read IMAGE    -> prints what the image holds, as JSON
"""

from __future__ import annotations

import json
import sys

from uvm import Kernel, open_db

AREA = "def area(self):\n    return self.width * self.height\n"
SCALED = "def scaledBy(self, factor):\n    return self.area() * factor\n"


def write(k: Kernel) -> dict:
    uuid = k.send("genesis", "clone")["$ref"]
    k.send(uuid, "registerAs:", ["widget"])
    for slot, value in [("width", 3), ("height", 4), ("tags", ["a", "b"]),
                        ("meta", {"color": "blue", "n": 1}), ("owner", {"$ref": "genesis"})]:
        k.send("widget", "setSlot:value:", [slot, value])
    k.send("widget", "defineMethod:source:", ["area", AREA, "first cut"])
    k.send("widget", "defineMethod:source:", ["scaledBy:", SCALED])
    return {"uuid": uuid}


def read(k: Kernel) -> dict:
    return {
        "uuid": k.send("widget", "uuid"),
        "genesis": k.send("genesis", "uuid"),
        "slots": k.send("widget", "slotNames"),
        "values": {s: k.send("widget", s) for s in ("width", "height", "tags", "meta", "owner")},
        "area": k.send("widget", "area"),
        "scaled": k.send("widget", "scaledBy:", [10]),
        "history": [(v["version"], v["source"], v["reason"])
                    for v in k.send("widget", "methodHistory:", ["area"])],
        "names": k.send("widget", "describe")["names"],
    }


def main() -> int:
    mode, image = sys.argv[1], sys.argv[2]
    db = open_db(image)
    try:
        result = write(Kernel(db)) if mode == "write" else read(Kernel(db))
    finally:
        db.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
