"""A small Chrome DevTools Protocol client over ``--remote-debugging-pipe`` (standard library only).

Chromium reads commands from fd 3 and writes replies/events to fd 4, each message a
JSON object followed by a NUL byte. One reader thread routes replies to waiting calls
and queues events; every call has a timeout, so a hung browser fails a test instead
of blocking it.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional

# Flags that keep a headless Chromium quiet on a machine without outside network.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
    "--no-default-browser-check", "--password-store=basic", "--use-mock-keychain",
    # nothing but loopback resolves: the page cannot reach out (e.g. the missing-models dialog's size probes)
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)


class CDPError(RuntimeError):
    """A protocol error reply, a timeout, or a browser that went away."""


def find_chromium() -> Optional[str]:
    """``$LUA_BROWSER``, else /usr/bin/chromium (Debian), else chromium/chrome on PATH."""
    for cand in (os.environ.get("LUA_BROWSER"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


class Browser:
    """A headless Chromium process with one attached page (flattened session)."""

    def __init__(self, executable: str, width: int = 1600, height: int = 1000,
                 log_path: Optional[Path] = None) -> None:
        self.executable = executable
        self.user_data_dir = tempfile.mkdtemp(prefix="lua-chromium-")
        self._next_id = 0
        self._lock = threading.Lock()
        self._pending: dict[int, "queue.Queue[dict]"] = {}
        self.events: "queue.Queue[dict]" = queue.Queue()
        self.console: list[str] = []
        self.session_id: Optional[str] = None
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def child_fds() -> None:  # runs in the child before exec: Chromium wants fds 3 and 4
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)

        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={self.user_data_dir}",
             f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            preexec_fn=child_fds, pass_fds=(3, 4), start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    # ------------------------------------------------------------------ wire
    def _read_loop(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg and msg["id"] in self._pending:
                    self._pending[msg["id"]].put(msg)
                else:
                    self._on_event(msg)
        for q in list(self._pending.values()):
            q.put({"error": {"message": "browser closed the DevTools pipe"}})

    def _on_event(self, msg: dict) -> None:
        if msg.get("method") == "Runtime.consoleAPICalled":
            args = msg["params"].get("args", [])
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
            self.console.append(f"{msg['params'].get('type')}: {text}")
        elif msg.get("method") == "Runtime.exceptionThrown":
            details = msg["params"].get("exceptionDetails", {})
            self.console.append("exception: " + str(details.get("exception", {}).get("description")
                                                     or details.get("text")))
        self.events.put(msg)

    def send(self, method: str, params: Optional[dict] = None, *, timeout: float = 30.0,
             session: bool = True) -> dict:
        """Send one command and return its ``result`` (raises CDPError on an error reply or timeout)."""
        with self._lock:
            self._next_id += 1
            mid = self._next_id
            reply: "queue.Queue[dict]" = queue.Queue()
            self._pending[mid] = reply
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session and self.session_id:
            msg["sessionId"] = self.session_id
        try:
            os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        except OSError as exc:
            raise CDPError(f"{method}: browser is gone ({exc})") from exc
        try:
            answer = reply.get(timeout=timeout)
        except queue.Empty:
            raise CDPError(f"{method}: no reply within {timeout:.0f}s") from None
        finally:
            self._pending.pop(mid, None)
        if "error" in answer:
            raise CDPError(f"{method}: {answer['error'].get('message')} {answer['error'].get('data', '')}")
        return answer.get("result", {})

    # ----------------------------------------------------------------- page
    def open_page(self, timeout: float = 30.0) -> None:
        """Attach to the first page target and enable the domains the tests use."""
        deadline = time.monotonic() + timeout
        while True:
            targets = self.send("Target.getTargets", session=False)["targetInfos"]
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise CDPError("no page target appeared")
            time.sleep(0.1)
        self.session_id = self.send("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True},
                                    session=False)["sessionId"]
        for domain in ("Page", "Runtime"):
            self.send(f"{domain}.enable")

    def navigate(self, url: str, timeout: float = 60.0) -> None:
        self.send("Page.navigate", {"url": url}, timeout=timeout)

    def evaluate(self, expression: str, *, timeout: float = 60.0) -> Any:
        """Evaluate JS in the page (promises awaited) and return its JSON value; JS exceptions raise CDPError."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True, "timeout": int(timeout * 1000)},
                           timeout=timeout + 5)
        if "exceptionDetails" in result:
            d = result["exceptionDetails"]
            raise CDPError(f"JS exception: {d.get('exception', {}).get('description') or d.get('text')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, poll: float = 0.25,
                 what: Optional[str] = None) -> Any:
        """Poll a JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last_exc: Optional[Exception] = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression, timeout=max(1.0, deadline - time.monotonic()))
                if value:
                    return value
            except CDPError as exc:
                last_exc = exc
            time.sleep(poll)
        raise CDPError(f"timed out after {timeout:.0f}s waiting for {what or expression}"
                       + (f" (last error: {last_exc})" if last_exc else ""))

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"}, timeout=60)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Ask Chromium to quit, then kill its process group; remove the profile folder."""
        try:
            if self.process.poll() is None:
                self.send("Browser.close", session=False, timeout=5)
                self.process.wait(5)
        except (CDPError, subprocess.TimeoutExpired):
            pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, 9)
            except ProcessLookupError:
                pass
            self.process.wait(5)
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        if hasattr(self._log, "close"):
            self._log.close()
        shutil.rmtree(self.user_data_dir, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
