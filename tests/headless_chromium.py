"""Real headless Chromium driven over the DevTools protocol, on a pipe (stdlib only).

Chromium started with --remote-debugging-pipe reads protocol messages from fd 3 and writes
them to fd 4, each JSON message ending with a NUL byte. `Browser.open(url)` loads a page in a
fresh tab and records what a test wants to know: console messages, exceptions, log entries
(CSP violations among them) and JavaScript dialogs (which it dismisses).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--remote-debugging-pipe", "--hide-scrollbars",
         "--window-size=1280,900")


def executable() -> str:
    """Debian's chromium (the test command installs it when run as root)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("chromium is not installed: run ./scripts/test as root, or "
                       "`apt-get install -y chromium`")


@dataclass
class Page:
    """What happened while a page loaded and ran."""

    session: str
    console: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)
    dialogs: list[dict[str, Any]] = field(default_factory=list)
    loaded: bool = False

    def errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and error log entries, as text."""
        out = [f"console.{c['type']}: " + " ".join(str(a.get("value", a.get("description")))
                                                   for a in c.get("args", []))
               for c in self.console if c["type"] in ("error", "warning", "assert")]
        out += [f"exception: {e['exceptionDetails'].get('exception', {}).get('description')}"
                for e in self.exceptions]
        out += [f"log {e['entry']['level']}: {e['entry']['text']}" for e in self.log
                if e["entry"]["level"] in ("error", "warning")]
        return out


class Browser:
    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="flowlens-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, to_browser_r, 3),
                   (os.POSIX_SPAWN_DUP2, from_browser_w, 4),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
        argv = [executable(), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        self.pid = os.posix_spawn(argv[0], argv, dict(os.environ), file_actions=actions)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    # --- protocol ---------------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None) -> dict[str, Any]:
        """Call a protocol method and wait for its result (events meanwhile are queued)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method,
                                   "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(self.timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            self._events.append(reply)

    def _receive(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return dict(json.loads(message))

    def pump(self, page: Page, seconds: float) -> None:
        """Handle the events that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            while self._events:
                self._handle(page, self._events.pop(0))
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self._events.append(self._receive(left))
            except TimeoutError:
                return

    def _handle(self, page: Page, event: dict[str, Any]) -> None:
        if event.get("sessionId") != page.session:
            return
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            page.console.append(params)
        elif method == "Runtime.exceptionThrown":
            page.exceptions.append(params)
        elif method == "Log.entryAdded":
            page.log.append(params)
        elif method == "Page.javascriptDialogOpening":
            page.dialogs.append(params)
            self.send("Page.handleJavaScriptDialog", {"accept": False}, page.session)
        elif method == "Page.loadEventFired":
            page.loaded = True

    # --- pages ------------------------------------------------------------------------------

    def open(self, url: str) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(session["sessionId"])
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=page.session)
        self.send("Page.navigate", {"url": url}, page.session)
        deadline = time.monotonic() + self.timeout
        while not page.loaded and time.monotonic() < deadline:
            self.pump(page, 0.2)
        if not page.loaded:
            raise TimeoutError(f"{url} did not load")
        return page

    def evaluate(self, page: Page, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True,
                                                "awaitPromise": True}, page.session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, page: Page, path: Path) -> None:
        """The whole page as PNG."""
        metrics = self.send("Page.getLayoutMetrics", session=page.session)
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000),
                "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                    "captureBeyondViewport": True},
                         page.session)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
