"""The supervisor's side of handovers: evolve/rollback requests and the hooks a
``Handover`` drives (spawn a candidate, validate, switch, switch back, retire).

A mixin of ``Supervisor``: it runs in the supervisor's loop thread and uses
the loop's sockets; the only blocking work (the uv build) goes to the
supervisor's worker thread. ``self.handover`` is the evolution lock: one at a
time; a second request is answered ``Busy`` naming the one running.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import zmq

from bridge.codec import encode
from bridge.messages import ErrorInfo, Reply, SendRequest, Stop, Validate
from envs import EnvError, EnvSpec, list_envs, remove_env

from . import handover_log, process
from .handover import Handover
from .incarnations import (
    EnvInfo,
    build,
    current_spec,
    envs_dir,
    save_current_spec,
    spawn_incarnation,
)

if TYPE_CHECKING:
    from .server import Supervisor

__all__ = ["EvolutionMixin"]

log = logging.getLogger("batos.supervisor.evolution")


class EvolutionMixin:
    handover: Handover | None
    _build_job: Future[EnvInfo] | None

    # --- requests -------------------------------------------------------------------

    def _evolve(self: Supervisor, request: Any, envelope: tuple[bytes, ...]) -> None:
        def refuse(type_: str, message: str) -> None:
            self._reply(envelope, Reply(id=request.id, ok=False, error=ErrorInfo(
                type=type_, message=message, where="supervisor")))

        if self.handover is not None:
            h = self.handover
            return refuse("Busy", f"handover {h.id} ({h.kind}, phase {h.phase}, asked by "
                          f"{h.who or 'unknown'}) is running; send again when it has ended")
        if self.state != "serving" or self.env is None:
            return refuse("Unavailable", f"no incarnation is serving (state {self.state}); "
                          "a handover needs a live incarnation to hand over from")
        try:
            spec = current_spec(self.config, self.home)
        except Exception as exc:
            return refuse("InvalidRequest", str(exc))
        if spec is None:
            return refuse("InvalidRequest", "evolve needs env.mode = 'uv': incarnations now run "
                          "on the supervisor's own interpreter, which a handover cannot replace")
        try:
            if request.kind == "evolve":
                after = spec.with_changes(add=request.add, remove=request.remove)
                if request.find_links:
                    data = after.to_dict()
                    data["find_links"] = list(data.get("find_links") or []) + list(request.find_links)
                    after = EnvSpec.from_dict(data)
            else:
                after = self._rollback_spec(request.env_id)
        except (EnvError, ValueError) as exc:
            return refuse("InvalidRequest", str(exc))
        if after.id == self.env.id:
            self._reply(envelope, Reply(id=request.id, ok=True, result={
                "outcome": "unchanged", "env": self.env.describe(),
                "message": "the incarnation already runs this spec"}))
            return
        removed = list(getattr(request, "remove", []) or [])
        if request.kind == "rollback":  # what the target env lacks counts as removed
            gone = set(self.env.requirement_names) - set(
                EnvInfo(id="", python="", spec=after.to_dict()).requirement_names)
            removed = sorted(gone)
        h = Handover(
            sup=self, log=self.hlog, kind=request.kind, spec_after=after,
            reply=lambda ok, body: self._reply(envelope, Reply(
                id=request.id, ok=ok, result=body if ok else None,
                error=None if ok else ErrorInfo(
                    type="HandoverFailed", where="supervisor",
                    message=f"phase {body['phase']} failed: {body['reason']} (handover {body['handover']})"))),
            who=request.who or "local", add=list(getattr(request, "add", []) or []), remove=removed,
            removed_modules=self._modules_of(removed), force=bool(getattr(request, "force", False)),
            offline=(request.offline or None) if request.kind == "evolve" else None,
            probation=request.probation if request.probation is not None else self.config.probation,
        )
        self.handover = h
        h.begin()

    def _rollback_spec(self: Supervisor, env_id: str | None) -> EnvSpec:
        """The spec of ``env_id``, or of the env the last completed handover left (one that
        served), never one that only failed validation."""
        known = {e.id: e for e in list_envs(envs_dir(self.config, self.home))}
        current = self.env.id if self.env is not None else None
        if env_id is None:
            for row in reversed(handover_log.summarize(self.hlog.path)):
                before = row.get("env_before")
                before = before.get("id") if isinstance(before, dict) else before
                if row.get("outcome") == "completed" and before and before != current and before in known:
                    env_id = before
                    break
            else:
                raise ValueError("there is no previous environment that served to roll back to "
                                 f"(known envs: {', '.join(sorted(known)) or 'none'})")
        target = known.get(env_id)
        if target is None:
            raise ValueError(f"no environment {env_id!r}; known: {', '.join(sorted(known))}")
        record = json.loads((target.path / "batos-env.json").read_text())
        return EnvSpec.from_dict(record["spec"])

    def _modules_of(self: Supervisor, names: list[str]) -> list[str]:
        """Top-level modules the current env's distributions ``names`` provide."""
        if not names or self.env is None or not self.env.path:
            return []
        from importlib import metadata

        wanted = {n.lower().replace("_", "-") for n in names}
        modules: set[str] = set()
        for site in self._site_packages():
            for dist in metadata.distributions(path=[site]):
                name = (dist.metadata.get("Name") or "").lower().replace("_", "-")
                if name not in wanted:
                    continue
                top = dist.read_text("top_level.txt")
                if top:
                    modules.update(line.strip() for line in top.splitlines() if line.strip())
                else:
                    for file in dist.files or []:
                        part = str(file).split("/")[0]
                        if part.endswith(".py"):
                            modules.add(part[:-3])
                        elif not part.endswith((".dist-info", ".data")) and part != "..":
                            modules.add(part)
        return sorted(modules)

    def _site_packages(self: Supervisor) -> list[str]:
        from pathlib import Path

        assert self.env is not None
        return [str(p) for p in Path(self.env.path).glob("lib/python*/site-packages")]

    def _handovers(self: Supervisor, request: Any, envelope: tuple[bytes, ...]) -> None:
        result = handover_log.report(self.hlog.path, last=request.last, check=request.verify)
        self._reply(envelope, Reply(id=request.id, ok=True, result=result))

    def recover_handover(self: Supervisor) -> dict[str, Any] | None:
        """At start: finish or revert a handover a previous supervisor left unfinished.

        The log alone decides (``handover_log.interrupted``); the env it keeps is
        recorded as current before any incarnation starts.
        """
        found = handover_log.interrupted(self.hlog.path)
        if found is None:
            return None
        keep = found.get("keep_env")
        record = envs_dir(self.config, self.home) / str(keep) / "batos-env.json"
        if keep and record.exists():
            save_current_spec(self.home, json.loads(record.read_text())["spec"])
        elif found["action"] == "revert" and keep is None:
            save_current_spec(self.home, None)  # the configured spec was the one serving
        finish = found["action"] == "finish"
        self.hlog.append(found["handover"], handover_log.RECOVERED, found=found, action=found["action"])
        self.hlog.append(found["handover"], handover_log.COMPLETED,
                         outcome="completed" if finish else "interrupted", after_restart=True,
                         reason=found["why"], env_before=found.get("env_before"),
                         env_after=found.get("env_after"), failed_phase=None if finish else found.get("phase"))
        log.warning("recovered an interrupted handover", extra={
            "handover": found["handover"], "action": found["action"], "why": found["why"]})
        return found

    # --- hooks the handover drives ----------------------------------------------------

    def start_build(self: Supervisor, h: Handover) -> None:
        self._build_job = self._pool.submit(build, h.spec_after, self.config, self.home,
                                            offline=h.offline, watch=self.build_watch)

    def _poll_build(self: Supervisor) -> None:
        job = self._build_job
        if job is None or not job.done():
            return
        self._build_job = None
        if self.handover is None:
            return
        try:
            env = job.result()
        except Exception as exc:
            self.handover.build_failed(exc)
        else:
            self.handover.built(env)

    def spawn_candidate(self: Supervisor, env: EnvInfo) -> str:
        self._seq += 1
        ident = f"inc-{self._seq}-{self._pid}"
        inc = spawn_incarnation(ident, env, home=self.home, config=self.config,
                                zeo=self.zeo.address, now=time.monotonic(), role="candidate")
        self.incarnations[ident] = inc
        self.children.add(inc.pid, f"candidate {ident}")
        self.publish("incarnation.spawned", incarnation=ident, env_id=env.id, role="candidate")
        return ident

    def _backend_send(self: Supervisor, ident: str, frames: list[bytes]) -> None:
        try:
            self.backend.send_multipart([ident.encode(), *frames], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("could not send to %s: %s", ident, exc)

    def send_validate(self: Supervisor, ident: str, handover: str, packages: list[str],
                      removed: list[str]) -> None:
        message = Validate(handover=handover, packages=packages, removed_modules=removed)
        self._backend_send(ident, [b"C", encode(message)])

    def send_probe(self: Supervisor, ident: str, rid: str, target: str, selector: str,
                   args: list[Any]) -> None:
        request = SendRequest(id=rid, target=target, selector=selector, args=args, author="probe")
        self._backend_send(ident, [b"Q", encode(request)])

    def switch_to(self: Supervisor, candidate: str, env: EnvInfo) -> str | None:
        previous = self.routing.switch(candidate)
        self.incarnations[candidate].role = "active"
        if previous in self.incarnations:
            self.incarnations[previous].role = "old"
        self.env = env
        save_current_spec(self.home, env.spec)
        for entry in self.routing.release_pending(time.monotonic()):
            self._forward(entry)
        self.publish("handover.switched", old=previous, new=candidate, env_id=env.id)
        self.notifier.status(f"serving: incarnation {candidate} (env {env.id}) on probation")
        return previous

    def switch_back(self: Supervisor, old: str | None, env: EnvInfo | None, *, failed: str | None) -> None:
        now = time.monotonic()
        back = self.incarnations.get(old) if old else None
        if env is not None:
            self.env = env
            save_current_spec(self.home, env.spec)
        if back is not None and back.state == "ready":
            self.routing.switch(back.id)
            back.role = "active"
        else:
            self.routing.switch(None)
            self._next_spawn = now
        if failed:
            bad = self.incarnations.get(failed)  # gone already when it exited
            if bad is not None:
                bad.role, bad.expected_exit = "failed", True
                process.kill(bad.proc, f"incarnation {bad.id}")
            self.routing.orphan(failed)  # its in-flight requests go to the one we switch to
        for entry in self.routing.release_pending(now):
            self._forward(entry)
        self.publish("handover.rolled_back", to=self.routing.active)

    def retire(self: Supervisor, ident: str) -> None:
        inc = self.incarnations.get(ident)
        if inc is not None:
            self._stop_incarnation(inc, "retired after a handover")

    def discard(self: Supervisor, ident: str) -> None:
        inc = self.incarnations.get(ident)
        if inc is not None:
            inc.role, inc.expected_exit = "failed", True
            self.routing.orphan(inc.id)
            self._backend_send(ident, [b"C", encode(Stop(reason="handover failed"))])
            process.kill(inc.proc, f"candidate {ident}")

    def prune_envs(self: Supervisor) -> None:
        folder = envs_dir(self.config, self.home)
        in_use = {i.env.id for i in self.incarnations.values()} | ({self.env.id} if self.env else set())
        known = sorted(list_envs(folder), key=lambda e: e.built_at, reverse=True)
        keep = {e.id for e in known if e.id in in_use}
        for env in known:
            if env.id in keep:
                continue
            if len(keep) < self.config.keep_generations + 1:
                keep.add(env.id)
            else:
                log.info("removing env %s (beyond %d generations)", env.id, self.config.keep_generations)
                remove_env(folder, env.id)

    def handover_done(self: Supervisor, h: Handover) -> None:
        if self.handover is h:
            self.handover = None
