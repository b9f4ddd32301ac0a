"""A small Chrome DevTools Protocol client for the page tests: Debian's chromium, headless, driven over
--remote-debugging-pipe (NUL-terminated JSON: chromium reads fd 3 and writes fd 4). No port, no download,
no package beyond the standard library.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time


class CDPError(RuntimeError):
    pass


class Browser:
    def __init__(self, executable: str | None = None, timeout: float = 60):
        # Debian's /usr/bin/chromium is a shell wrapper that only adds flags from /etc/chromium.d: run the browser.
        binary = "/usr/lib/chromium/chromium"
        self.executable = executable or (binary if os.access(binary, os.X_OK) else shutil.which("chromium"))
        if not self.executable:
            raise CDPError("chromium is not installed (scripts/setup.sh installs Debian's chromium)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="fleetbake-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The child sees our read end of to_browser as fd 3 and the write end of from_browser as fd 4.

        def wire():
            # Out of the way first: either end may itself be fd 3 or 4. dup2 leaves the targets inheritable.
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        argv = [self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}", "--window-size=1366,768", "about:blank"]
        # 3 and 4 kept: subprocess closes every other descriptor after preexec_fn has made them.
        self.process = subprocess.Popen(argv, preexec_fn=wire, pass_fds=(3, 4, to_browser_r, from_browser_w),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session = None

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session or self.session:
            message["sessionId"] = session or self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise CDPError("no answer from chromium in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise CDPError(f"chromium exited: {self.process.stderr.read().decode(errors='replace')[-500:]}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> dict:
        """A new tab showing `url`; returns Page.navigate's result (errorText when it did not load)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable")
        result = self.send("Page.navigate", {"url": url})
        self.wait_loaded()
        return result

    def wait_loaded(self) -> None:
        deadline = time.monotonic() + self.timeout
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise CDPError("the page did not finish loading")
            time.sleep(0.05)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise CDPError(f"{expression[:80]}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def screenshot(self, path: str) -> None:
        import base64

        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        with open(path, "wb") as handle:
            handle.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.session = None
            self.send("Browser.close")
        except (CDPError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_browser, self._from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
