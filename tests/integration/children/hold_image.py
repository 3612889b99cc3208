"""Child for test_processes: hold an image's FileStorage open for writing until told to stop.

Usage: python hold_image.py IMAGE
Prints READY once the image is open (and its lock taken), then waits for a
line (or EOF) on stdin, closes the image and exits 0.
"""

from __future__ import annotations

import sys

from uvm import open_db


def main() -> int:
    db = open_db(sys.argv[1])
    try:
        print("READY", flush=True)
        sys.stdin.readline()
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
