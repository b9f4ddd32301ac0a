"""fleetbake/operate/status.py against a Buildbot REST server on loopback."""

import json
from http.server import BaseHTTPRequestHandler

import pytest

from conftest import free_port, serve_on_loopback
from fleetbake.errors import FleetbakeError
from fleetbake.operate import status

WORKERS = {"workers": [
    {"name": "up", "connected_to": [{"masterid": 1}], "workerinfo": {"version": "4.3.0", "admin": "A <a@x>"}},
    {"name": "down", "connected_to": [], "workerinfo": {}},
]}


@pytest.fixture
def fake_master():
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


def test_status_exit_code_follows_the_workers(fake_master, tmp_path):
    lines = []
    assert status.check(fake_master, ["up"], log=lines.append) == 0
    assert "online" in lines[0] and "4.3.0" in lines[0]
    notified = tmp_path / "notified"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\necho "$1 $FLEETBAKE_MASTER" >> {notified}\n')
    script.chmod(0o755)
    assert status.check(fake_master, None, str(script), log=lines.append) == 1
    assert notified.read_text().split() == ["down", fake_master]


def test_status_errors_are_one_line(fake_master):
    with pytest.raises(FleetbakeError, match=r"unknown worker\(s\): ghost \(known: down, up\)"):
        status.check(fake_master, ["ghost"], log=lambda _: None)
    closed = free_port()
    with pytest.raises(FleetbakeError, match="cannot reach the Buildbot master at http://127.0.0.1:"):
        status.check(f"http://127.0.0.1:{closed}/", log=lambda _: None)
    with pytest.raises(FleetbakeError, match="not an http"):
        status.check("buildbot.python.org", log=lambda _: None)
