"""fleetbake/worker/preflight.py: its probes against loopback ports and this machine."""

import socket

from conftest import free_port
from fleetbake.worker import preflight


def test_preflight_reports_each_check_and_never_hangs(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port = listener.getsockname()[1]
    closed_port = free_port()
    try:
        results = preflight.run(("127.0.0.1", open_port), str(tmp_path),
                                ports=[("127.0.0.1", open_port, "open"), ("127.0.0.1", closed_port, "closed")],
                                dns_name="localhost", timeout=2)
    finally:
        listener.close()
    by_name = {r.name: r for r in results}
    assert by_name["cpus"].status == "ok" and by_name["memory"].status == "ok"
    assert by_name["dns (53)"].status == "ok"
    assert by_name[f"master 127.0.0.1:{open_port}"].status == "ok"
    assert by_name[f"outbound {open_port}"].status == "ok"
    assert by_name[f"outbound {closed_port}"].status == "warn" and "refused" in by_name[f"outbound {closed_port}"].detail
    text, code = preflight.report(results)
    assert code == (1 if by_name["disk"].status == "fail" else 0)


def test_preflight_fails_on_an_unreachable_master_and_small_disk(tmp_path):
    closed = free_port()
    results = preflight.run(("127.0.0.1", closed), str(tmp_path), ports=[], dns_name="localhost", timeout=2)
    text, code = preflight.report(results)
    assert code == 1
    assert f"fail  master 127.0.0.1:{closed}" in text
    assert preflight.check_disk(str(tmp_path), minimum_gb=10**6).status == "fail"
    assert preflight.check_cpus(minimum=10**6).status == "fail"
    assert preflight.master_address("m.example.org") == ("m.example.org", 9020)
