"""fleetbake/operate/status.py against a canned HTTP stub on loopback: it answers GET /api/v2/workers with a fixed
body, in the shape Buildbot's data API declares for workers (checked below against the installed buildbot's own
entity type). It is not a Buildbot master: tests/integration/test_fleet_join.py reads a real master's workers
through the same client (BuildbotApi)."""

import json
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import free_port, serve_on_loopback
from fleetbake.errors import FleetbakeError
from fleetbake.operate import status

WORKERS = {"workers": [
    {"workerid": 1, "name": "up", "connected_to": [{"masterid": 1}], "configured_on": [{"masterid": 1, "builderid": 1}],
     "workerinfo": {"version": "4.3.0", "admin": "A <a@x>"}, "paused": False, "pause_reason": None, "graceful": False},
    {"workerid": 2, "name": "down", "connected_to": [], "configured_on": [{"masterid": 1, "builderid": 1}],
     "workerinfo": {}, "paused": False, "pause_reason": None, "graceful": False},
], "meta": {"total": 2}}


def test_the_canned_workers_are_what_buildbots_data_api_declares():
    """Each canned worker passes the installed buildbot's own validation of its worker entity."""
    from buildbot.data import workers

    entity = workers.Worker.entityType
    assert {worker["name"]: list(entity.validate(worker["name"], worker)) for worker in WORKERS["workers"]} == {
        "up": [], "down": []}


@pytest.fixture
def canned_workers_api():
    """A canned HTTP stub (not a Buildbot master): WORKERS at /api/v2/workers, 404 elsewhere."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps(WORKERS).encode() if self.path == "/api/v2/workers" else b"{}"
            self.send_response(200 if self.path == "/api/v2/workers" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = serve_on_loopback(Handler)
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def test_status_exit_code_follows_the_workers(canned_workers_api, tmp_path):
    lines = []
    assert status.check(canned_workers_api, ["up"], log=lines.append) == 0
    assert "online" in lines[0] and "4.3.0" in lines[0]
    notified = tmp_path / "notified"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $FLEETBAKE_MASTER" >> {notified}\n')
    script.chmod(0o755)
    assert status.check(canned_workers_api, None, str(script), log=lines.append) == 1
    assert notified.read_text().split() == ["down", canned_workers_api]


def test_status_errors_are_one_line(canned_workers_api):
    with pytest.raises(FleetbakeError, match=r"unknown worker\(s\): ghost \(known: down, up\)"):
        status.check(canned_workers_api, ["ghost"], log=lambda _: None)
    closed = free_port()
    with pytest.raises(FleetbakeError, match="cannot reach the Buildbot master at http://127.0.0.1:"):
        status.check(f"http://127.0.0.1:{closed}/", log=lambda _: None)
    with pytest.raises(FleetbakeError, match="not an http"):
        status.check("buildbot.python.org", log=lambda _: None)
