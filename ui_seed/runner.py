"""``batos ui``: fetch the window's source from the image, check it, run it, or fall back.

Steps: ask Genesis for ``display_yourself`` (the window's source as text);
check it with the crucible's static stage for a whole module
(``crucible.check_ui_source``, only ``ui_seed.constants.ALLOWED_MODULES``
importable); compile it, exec it in a fresh module and call its
``make_app(session)``, then build the root widget. If any step fails, the seed window (``window.py`` of
this package) is run instead, with a banner in the window and a log line that
give the reason (a step's failure is ``errors.WindowSourceError``).

``--screenshot PATH`` renders offscreen (``SDL_VIDEODRIVER=offscreen`` unless
set), waits until the browser has shown its first object (Genesis), saves the
window as a PNG and, beside it, ``PATH.json``: where the window came from,
the banner, and the texts of the labels, buttons and inputs it drew.

Threads: Kivy runs on the main thread; ``session.Session`` runs bridge calls on
its workers and hands their outcomes back with ``Clock.schedule_once``.
Kivy is imported only inside ``run`` after its environment is set.
"""

from __future__ import annotations

import ast
import importlib.resources
import json
import logging
import os
import shutil
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge import Client

from .constants import ALLOWED_MODULES, DISPLAY_SELECTOR, RECEIVER, WINDOW_RESOURCE
from .errors import WindowSourceError

__all__ = ["Loaded", "WindowSourceError", "check_source", "exec_window", "fetch_source",
           "load_window", "run", "seed_source"]

log = logging.getLogger("batos.ui")

SIZE = (1280, 800)
IMAGE_ORIGIN = f"{RECEIVER} {DISPLAY_SELECTOR}"


@dataclass
class Loaded:
    module: types.ModuleType
    origin: str  # "image" or "fallback"
    reason: str  # why the fallback is shown; "" for the image's window


def seed_source() -> str:
    return importlib.resources.files("ui_seed").joinpath(WINDOW_RESOURCE).read_text()


def fetch_source(endpoint: str, *, timeout: float = 10.0,
                 curve: tuple[bytes, bytes, bytes] | None = None) -> str:
    """The window's source as the image answers it; ``WindowSourceError`` says why not."""
    from bridge import BridgeError, RemoteError, Timeout

    try:
        with Client(endpoint, timeout=timeout, retries=1, curve=curve) as client:
            source = client.send(RECEIVER, DISPLAY_SELECTOR)
    except Timeout as exc:
        raise WindowSourceError(f"no answer from the supervisor at {endpoint} "
                                f"(is 'batos up' running?): {exc}") from exc
    except RemoteError as exc:
        raise WindowSourceError(f"{RECEIVER} {DISPLAY_SELECTOR} failed: {exc.type}: "
                                f"{exc.message}") from exc
    except BridgeError as exc:
        raise WindowSourceError(f"cannot reach {endpoint}: {exc}") from exc
    if not isinstance(source, str):
        raise WindowSourceError(f"{RECEIVER} {DISPLAY_SELECTOR} answered a "
                                f"{type(source).__name__}, not the window's source text")
    return source


def check_source(source: str) -> list[str]:
    """The crucible's static stage for a whole module: the reasons to refuse, or []."""
    try:
        from crucible import check_ui_source
    except ImportError as exc:  # the crucible is optional for the UI; check the imports here
        log.warning("crucible not importable (%s): checking the window's imports only", exc)
        return _imports_outside(source)
    verdict = check_ui_source(source, allowed_modules=ALLOWED_MODULES)
    return [] if verdict.status == "pass" else list(verdict.reasons) or [verdict.status]


def _imports_outside(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [f"line {exc.lineno}: the source does not parse: {exc.msg}"]
    reasons = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            if name.partition(".")[0] not in ALLOWED_MODULES:
                reasons.append(f"line {node.lineno}: import of {name!r} is not allowed")
    return reasons


def exec_window(source: str, origin: str) -> types.ModuleType:
    """Check, compile and exec ``source`` in a fresh module that must define ``make_app``."""
    reasons = check_source(source)
    if reasons:
        raise WindowSourceError("the crucible's static check refused it: " + "; ".join(reasons[:5]))
    module = types.ModuleType("batos_window", f"the window's source from {origin}")
    try:
        code = compile(source, f"<{origin}>", "exec")
        exec(code, module.__dict__)  # noqa: S102 - the window's source, checked above
    except Exception as exc:
        raise WindowSourceError(f"it does not run: {type(exc).__name__}: {exc}") from exc
    if not callable(module.__dict__.get("make_app")):
        raise WindowSourceError("it defines no make_app(session)")
    return module


def load_window(fetch: Callable[[], str]) -> Loaded:
    """The image's window if it can be fetched, checked and run; else the seed with a reason."""
    try:
        return Loaded(exec_window(fetch(), IMAGE_ORIGIN), "image", "")
    except WindowSourceError as exc:
        return fallback(f"the image's window ({IMAGE_ORIGIN}) was not used: {exc}")


def fallback(reason: str) -> Loaded:
    log.warning("%s; showing the seed window from ui_seed/%s", reason, WINDOW_RESOURCE)
    return Loaded(exec_window(seed_source(), f"ui_seed/{WINDOW_RESOURCE}"), "fallback", reason)


def build_app(loaded: Loaded, session: Any) -> tuple[Any, Loaded]:
    """``make_app(session)`` and its root widget; the seed's if the image's fails."""
    from kivy.uix.widget import Widget

    session.banner, session.source = loaded.reason, loaded.origin
    try:
        app = loaded.module.make_app(session)
        app.load_config()
        root = app.build()
        if not isinstance(root, Widget):
            raise TypeError(f"build() answered {type(root).__name__}, not a Kivy widget")
    except Exception as exc:
        if loaded.origin != "image":
            raise
        session.forget_observers()
        return build_app(fallback(f"the image's window ({IMAGE_ORIGIN}) failed to build: "
                                  f"{type(exc).__name__}: {exc}"), session)
    app.root, app.built = root, True
    return app, loaded


def prepare_kivy(*, screenshot: bool, kivy_home: str | None) -> None:
    """Kivy's environment and window size; before the first ``import kivy``."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    if screenshot:
        os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
        os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
        os.environ.setdefault("KIVY_CLIPBOARD", "dummy")  # no X selection offscreen
    if kivy_home:
        os.environ["KIVY_HOME"] = kivy_home
    from kivy.config import Config

    Config.set("graphics", "width", str(SIZE[0]))
    Config.set("graphics", "height", str(SIZE[1]))
    Config.set("kivy", "exit_on_escape", "0")
    logging.getLogger("kivy").setLevel(logging.WARNING)


def drawn_texts(root: Any) -> list[str]:
    """The texts of every label, button and text input under ``root``."""
    from kivy.uix.label import Label
    from kivy.uix.textinput import TextInput

    return [w.text for w in root.walk(restrict=False)
            if isinstance(w, Label | TextInput) and w.text]


def run(endpoint: str, *, timeout: float = 10.0, curve: tuple[bytes, bytes, bytes] | None = None,
        screenshot: str | os.PathLike[str] | None = None, settle_timeout: float = 60.0) -> int:
    """Show the window (or render it once and save a screenshot); the exit status."""
    kivy_home = tempfile.mkdtemp(prefix="batos-kivy-") if screenshot else None
    try:
        prepare_kivy(screenshot=screenshot is not None, kivy_home=kivy_home)
        return _run(endpoint, timeout, curve, Path(screenshot) if screenshot else None,
                    settle_timeout)
    finally:
        if kivy_home:
            shutil.rmtree(kivy_home, ignore_errors=True)


def _run(endpoint: str, timeout: float, curve: tuple[bytes, bytes, bytes] | None,
         screenshot: Path | None, settle_timeout: float) -> int:
    from kivy.clock import Clock

    from .session import Session

    loaded = load_window(lambda: fetch_source(endpoint, timeout=timeout, curve=curve))
    session = Session(endpoint, timeout=timeout, curve=curve,
                      deliver=lambda fn: Clock.schedule_once(lambda _dt: fn(), 0))
    outcome = {"status": 0}
    try:
        app, loaded = build_app(loaded, session)
        if screenshot is not None:
            _arrange_screenshot(app, session, loaded, screenshot, settle_timeout, outcome)
        session.start()
        app.run()
    finally:
        session.close()
    return outcome["status"]


def _arrange_screenshot(app: Any, session: Any, loaded: Loaded, path: Path,
                        settle_timeout: float, outcome: dict[str, int]) -> None:
    from kivy.clock import Clock
    from kivy.core.window import Window

    taken: list[bool] = []

    def capture(ready: bool) -> None:
        if taken:
            return
        taken.append(True)
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix="batos-shot-"))
        try:
            shot = Window.screenshot(name=str(scratch / "window.png"))
            shutil.move(shot, path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        sidecar = {
            "png": str(path), "origin": loaded.origin, "banner": loaded.reason,
            "ready": ready, "endpoint": session.endpoint, "state": session.state,
            "error": session.error.text if session.error else (
                session.browser.error.text if session.browser.error else ""),
            "size": list(Window.size), "title": app.title, "texts": drawn_texts(app.root),
        }
        path.with_name(path.name + ".json").write_text(json.dumps(sidecar, indent=2))
        log.info("screenshot saved to %s (window from %s)", path, loaded.origin)
        if not ready:
            outcome["status"] = 3
        app.stop()

    def after_frames(ready: bool, frames: int) -> None:
        # labels get their texture and layout on the frames after the data arrives
        if frames <= 0:
            Clock.schedule_once(lambda _dt: capture(ready), 0.2)
        else:
            Clock.schedule_once(lambda _dt: after_frames(ready, frames - 1), 0)

    session.on_first_view(lambda ok: after_frames(ok, 3))
    Clock.schedule_once(lambda _dt: capture(False), settle_timeout)
