"""``python -m bridge.conformance ENDPOINT``: see ``bridge.conformance.cli``."""

from __future__ import annotations

from bridge.conformance.cli import main

raise SystemExit(main())
