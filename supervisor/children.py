"""A record of the supervisor's children, so a restarted supervisor can clean up.

Children run in their own sessions (so a group kill reaches grandchildren),
which also means they outlive a supervisor that is killed with SIGKILL: a
ZEO server that keeps the image's lock, an incarnation that keeps its
connections. The supervisor therefore records each child (pid, process
start time, what it is) in ``<run>/children.json`` and, at start, kills
whatever recorded child is still alive before starting its own. The start
time guards against pid reuse: a pid whose process started at another time
is someone else's and is left alone. Killing is ``envs.children.kill`` (its group,
then waiting for it to be gone).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import psutil

from envs import children

__all__ = ["ChildRecord"]

log = logging.getLogger("batos.supervisor.children")


class ChildRecord:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.children: dict[int, dict[str, object]] = {}

    def add(self, pid: int, what: str) -> None:
        try:
            started = psutil.Process(pid).create_time()
        except psutil.Error:
            started = 0.0
        self.children[pid] = {"what": what, "started": started}
        self._save()

    def remove(self, pid: int) -> None:
        if self.children.pop(pid, None) is not None:
            self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({str(k): v for k, v in self.children.items()}))
        os.replace(tmp, self.path)

    def reap_strays(self) -> list[str]:
        """Kill the recorded children of a previous supervisor that are still alive."""
        try:
            recorded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        killed = []
        for pid_text, info in recorded.items():
            pid = int(pid_text)
            try:
                proc = psutil.Process(pid)
                if info.get("started") and abs(proc.create_time() - float(info["started"])) > 1.0:
                    continue  # the pid was reused by an unrelated process
                what = f"{info.get('what')} (pid {pid})"
                if not children.kill(proc, f"stray {what}", wait=children.REAP_TIMEOUT):
                    continue
                killed.append(what)
            except (psutil.Error, OSError):
                continue
        if killed:
            log.warning("killed children left by a previous supervisor: %s", ", ".join(killed))
        self.path.unlink(missing_ok=True)
        return killed
