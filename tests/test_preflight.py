"""fleetbake/worker/preflight.py: its probes against loopback ports and this machine."""

import contextlib
import socket
import time

import pytest

from conftest import free_port
from fleetbake.worker import preflight


@contextlib.contextmanager
def silent_port():
    """A loopback port where a connect gets no answer at all, as behind a firewall that drops packets: its listener
    never accepts, and once its queue is full Linux drops every further SYN."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            filler = stack.enter_context(socket.socket())
            filler.settimeout(0.2)
            try:
                filler.connect(("127.0.0.1", port))
            except socket.timeout:
                break  # this connect got no answer: so will the probe's
        else:
            pytest.fail(f"127.0.0.1:{port} still answers after 8 connections")
        yield port


def test_preflight_reports_each_check_and_never_hangs(tmp_path):
    """Three ports that never answer: each probe gives up at the timeout, and they wait side by side, so the whole run
    takes one timeout, not three."""
    timeout = 2.0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    open_port = listener.getsockname()[1]
    closed_port = free_port()
    with listener, silent_port() as a, silent_port() as b, silent_port() as c:
        started = time.monotonic()
        results = preflight.run(("127.0.0.1", open_port), str(tmp_path),
                                ports=[("127.0.0.1", open_port, "open"), ("127.0.0.1", closed_port, "closed"),
                                       *[("127.0.0.1", port, "silent") for port in (a, b, c)]],
                                dns_name="localhost", timeout=timeout)
        elapsed = time.monotonic() - started
    # At least one timeout (the silent ports really were silent), and under two: one for the waits side by side,
    # one more for everything else on a busy machine. One after the other they would take three.
    assert timeout <= elapsed < 2 * timeout, elapsed
    by_name = {r.name: r for r in results}
    assert by_name["cpus"].status == "ok" and by_name["memory"].status == "ok"
    assert by_name["dns (53)"].status == "ok"
    assert by_name[f"master 127.0.0.1:{open_port}"].status == "ok"
    assert by_name[f"outbound {open_port}"].status == "ok"
    assert by_name[f"outbound {closed_port}"].status == "warn" and "refused" in by_name[f"outbound {closed_port}"].detail
    for port in (a, b, c):
        assert by_name[f"outbound {port}"] == preflight.Result(
            f"outbound {port}", "warn", f"127.0.0.1:{port}: no answer within 2s (a firewall dropping outbound traffic?); "
                                        "silent will fail or skip")
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


def test_the_disk_check_names_the_workers_threshold_and_the_free_space(tmp_path):
    from fleetbake.worker import disk

    free, _ = disk.space(str(tmp_path))
    above = disk.Settings(min_free_gb=round(free / disk.GB * 2 + 1, 3), interval=60, path=str(tmp_path))
    result = preflight.check_disk(str(tmp_path), watch=above)
    assert result.status == "fail"
    assert result.detail.startswith(f"{disk.gb(free)} GB free at {tmp_path}: below {above.threshold()}, where the worker "
                                    "reports unhealthy and removes idle builder directories")
    below = disk.Settings(min_free_gb=0.001, interval=60, path=str(tmp_path))
    result = preflight.check_disk(str(tmp_path), minimum_gb=10**6, watch=below)  # enough for the worker, not the devguide
    assert result.status == "fail" and "the devguide asks for at least 1000000 GB" in result.detail
    assert "the worker reports unhealthy below WORKER_MIN_FREE_GB=0.001 GB" in result.detail
    assert preflight.check_disk(str(tmp_path), minimum_gb=0, watch=below).status == "ok"
    assert preflight.check_disk(str(tmp_path / "missing"), watch=below).status == "fail"


@pytest.mark.parametrize("value, message", [
    ("plenty", "preflight: error: WORKER_MIN_FREE_GB='plenty' is not a number of GB such as 10 or 2.5"),
    ("999999", "preflight: error: WORKER_MIN_FREE_GB=999999 GB is more than the whole filesystem at "),
])
def test_a_bad_threshold_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, value, message):
    monkeypatch.setenv("WORKER_MIN_FREE_GB", value)
    assert preflight.main(["--master=127.0.0.1:1", f"--buildarea={tmp_path}", "--timeout=1"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and err.startswith(message), err
