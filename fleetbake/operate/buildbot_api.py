"""A small client for Buildbot's REST API (/api/v2), with one-line errors."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fleetbake.errors import FleetbakeError

# Buildbot's build results, as the REST API reports them.
SUCCESS, WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED = range(7)


class ApiError(FleetbakeError):
    pass


class BuildbotApi:
    def __init__(self, url: str, timeout: float = 10):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ApiError(f"--master {url}: not an http(s) URL of a Buildbot master")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/api/v2/{path.lstrip('/')}", data=data,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{self.url}: {exc.code} {exc.reason} for /api/v2/{path}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach the Buildbot master at {self.url}: {reason}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(f"{self.url}: /api/v2/{path} did not answer JSON; is this a Buildbot master?") from None

    def get(self, path: str) -> Any:
        return self._request(path)

    def workers(self) -> list[dict[str, Any]]:
        return self.get("workers")["workers"]

    def worker(self, name: str) -> dict[str, Any] | None:
        return next((w for w in self.workers() if w["name"] == name), None)

    def connected(self, name: str) -> bool:
        worker = self.worker(name)
        return bool(worker and worker["connected_to"])

    def wait_connected(self, name: str, connected: bool = True, timeout: float = 120) -> float:
        """Seconds until the master lists the worker as (dis)connected; an ApiError past `timeout`."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.connected(name) == connected:
                return time.monotonic() - started
            time.sleep(0.5)
        raise ApiError(f"{name} {'never connected' if connected else 'still connected'} after {timeout:.0f}s")

    def builder_id(self, name: str) -> int:
        builders = self.get(f"builders?name={urllib.parse.quote(name)}")["builders"]
        if not builders:
            raise ApiError(f"{self.url}: no builder named {name!r}")
        return builders[0]["builderid"]

    def force(self, builder: str, scheduler: str = "force") -> int:
        """Force a build; returns the builder ID to poll."""
        builderid = self.builder_id(builder)
        answer = self._request(f"forceschedulers/{scheduler}",
                               {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"builderid": str(builderid)}})
        if answer.get("error"):
            raise ApiError(f"{self.url}: force {builder}: {answer['error'].get('message')}")
        return builderid

    def wait_for_build(self, builderid: int, after: int = 0, timeout: float = 1800) -> dict[str, Any]:
        """The first complete build of the builder numbered above `after`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            builds = self.get(f"builders/{builderid}/builds?number__gt={after}&complete=true")["builds"]
            if builds:
                return builds[0]
            time.sleep(2)
        raise ApiError(f"{self.url}: no build of builder {builderid} completed within {timeout:.0f}s")

    def last_build_number(self, builderid: int) -> int:
        builds = self.get(f"builders/{builderid}/builds?order=-number&limit=1")["builds"]
        return builds[0]["number"] if builds else 0

    def step_logs(self, buildid: int) -> dict[str, str]:
        """Each step's name -> its stdio log text."""
        logs = {}
        for step in self.get(f"builds/{buildid}/steps")["steps"]:
            text = []
            for log in self.get(f"steps/{step['stepid']}/logs")["logs"]:
                for line in self.get(f"logs/{log['logid']}/contents")["logchunks"]:
                    text.append(line["content"])
            logs[step["name"]] = "".join(text)
        return logs
