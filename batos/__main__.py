"""``python -m batos``: the same command as ``batos``."""

from __future__ import annotations

import sys

from batos.main import main

if __name__ == "__main__":
    sys.exit(main())
