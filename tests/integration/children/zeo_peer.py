"""Child for test_processes: a second ZEO client, driven line by line over stdin.

Usage: python zeo_peer.py ADDRESS
Prints READY once connected, then answers one JSON line per command:

    fill OBJ PREFIX N   set slots PREFIX0..PREFIX<N-1> = 0..N-1 on OBJ, and send
                        bump to shared before every 4th slot; answers "done"
    set OBJ SLOT JSON   one setSlot:value: message; answers "ok"
    get OBJ SLOT        one message reading the slot; answers its value as JSON
    slots OBJ PREFIX    the slots PREFIX<digits> of OBJ and their values, as JSON

A message that raises a UVMError answers {"error": {"type", "message"}}.
Exits 0 at EOF on stdin.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from uvm import Kernel, UVMError, open_db


def run(k: Kernel, line: str) -> Any:
    cmd, *args = line.split(maxsplit=3)
    if cmd == "fill":
        obj, prefix, n = args
        for i in range(int(n)):
            if i % 4 == 0:
                k.send("shared", "bump")
            k.send(obj, "setSlot:value:", [f"{prefix}{i}", i])
        return "done"
    if cmd == "set":
        k.send(args[0], "setSlot:value:", [args[1], json.loads(args[2])])
        return "ok"
    if cmd == "get":
        return k.send(args[0], args[1])
    if cmd == "slots":
        obj, prefix = args
        return {s: k.send(obj, s) for s in k.send(obj, "slotNames")
                if re.fullmatch(re.escape(prefix) + r"\d+", s)}
    raise SystemExit(f"unknown command {line!r}")


def main() -> int:
    db = open_db(zeo=sys.argv[1])
    try:
        k = Kernel(db)
        print("READY", flush=True)
        for line in sys.stdin:
            try:
                answer = run(k, line)
            except UVMError as exc:
                answer = {"error": exc.to_dict()}
            print(json.dumps(answer), flush=True)
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
