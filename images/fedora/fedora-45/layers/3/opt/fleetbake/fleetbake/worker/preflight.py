#!/usr/bin/env python3
# Generated from matrix.yml (row fedora-45) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""Check a host against the devguide's requirements for a buildbot worker (stdlib only).

Runs on the host (`invoke preflight`) and inside the image (`docker run IMAGE preflight`).
Every network probe has a timeout, and all run at once, so it never hangs. The disk check
also names the worker's own threshold (WORKER_MIN_FREE_GB, fleetbake.worker.disk): below
it a running worker reports unhealthy.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import socket
import sys
from dataclasses import dataclass

from fleetbake.worker import disk, fleet
from fleetbake.worker.hostport import parse_hostport

OK, WARN, FAIL = "ok", "warn", "fail"
# The devguide's table of outbound ports used by the worker and the test suite.
DEVGUIDE_PORTS = [
    ("ftp.debian.org", 21, "test_urllib2net (FTP)"),
    ("python.org", 80, "HTTP tests"),
    ("news.gmane.io", 119, "test_nntplib"),
    ("python.org", 443, "test_ssl and HTTPS tests"),
    ("smtp.gmail.com", 465, "test_smtpnet (SMTPS)"),
    ("smtp.gmail.com", 587, "test_smtpnet (submission)"),
]


@dataclass(frozen=True)
class Result:
    name: str
    status: str
    detail: str


def cpu_count() -> int:
    """The CPUs this process may run on (a container's --cpuset-cpus counts), as preflight, info/host and
    `invoke request` all count them."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def memory_kib(meminfo: str = "/proc/meminfo") -> int | None:
    """MemTotal in KiB, or None when it cannot be read."""
    try:
        with open(meminfo, encoding="ascii") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def check_cpus(minimum: int = 2) -> Result:
    count = cpu_count()
    return Result("cpus", OK if count >= minimum else FAIL, f"{count} CPU(s); the devguide asks for at least {minimum}")


def check_memory(minimum_mb: int = 512, meminfo: str = "/proc/meminfo") -> Result:
    kib = memory_kib(meminfo)
    if kib is None:
        return Result("memory", WARN, "cannot read MemTotal")
    mb = kib // 1024
    return Result("memory", OK if mb >= minimum_mb else FAIL, f"{mb} MB; the devguide asks for at least {minimum_mb} MB")


def check_disk(path: str, minimum_gb: float = disk.DEVGUIDE_GB, watch: disk.Settings | None = None) -> Result:
    """Free space where the buildarea lives, against the devguide's figure and the worker's own threshold."""
    try:
        free, _ = disk.space(path)
    except OSError as exc:
        return Result("disk", FAIL, f"{path}: {exc.strerror}")
    devguide = f"the devguide asks for at least {disk.number(minimum_gb)} GB"
    if watch is None:
        return Result("disk", OK if free >= minimum_gb * disk.GB else FAIL, f"{disk.gb(free)} GB free at {path}; {devguide}")
    if free < watch.min_free:
        return Result("disk", FAIL, f"{disk.gb(free)} GB free at {path}: below {watch.threshold()}, where the worker "
                                    f"reports unhealthy and removes idle builder directories; {devguide}")
    return Result("disk", OK if free >= minimum_gb * disk.GB else FAIL,
                  f"{disk.gb(free)} GB free at {path}; {devguide}; the worker reports unhealthy below {watch.threshold()}")


def probe_tcp(host: str, port: int, timeout: float) -> str | None:
    """None if a TCP connection opens, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.timeout:
        return f"no answer within {timeout:.0f}s (a firewall dropping outbound traffic?)"
    except OSError as exc:
        return exc.strerror or str(exc)


def probe_dns(host: str) -> str | None:
    try:
        socket.getaddrinfo(host, None)
        return None
    except OSError as exc:
        return exc.strerror or str(exc)


def run(master: tuple[str, int], buildarea: str, ports: list[tuple[str, int, str]] = DEVGUIDE_PORTS,
        dns_name: str = "python.org", timeout: float = 5.0, watch: disk.Settings | None = None) -> list[Result]:
    results = [check_cpus(), check_memory(), check_disk(buildarea, watch=watch)]
    host, port = master
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(ports) + 2) as pool:
        dns = pool.submit(probe_dns, dns_name)
        to_master = pool.submit(probe_tcp, host, port, timeout)
        probes = [(target, pool.submit(probe_tcp, target[0], target[1], timeout)) for target in ports]
        try:
            dns_error = dns.result(timeout=timeout + 1)
        except concurrent.futures.TimeoutError:
            dns_error = f"no answer within {timeout:.0f}s"
        results.append(Result("dns (53)", OK if dns_error is None else WARN,
                              f"{dns_name} resolves" if dns_error is None else f"{dns_name}: {dns_error}; test_socket and others need DNS"))
        error = to_master.result()
        results.append(Result(f"master {host}:{port}", OK if error is None else FAIL,
                              "reachable" if error is None else f"{error}; the worker connects out to this address"))
        for (target_host, target_port, why), future in probes:
            error = future.result()
            results.append(Result(f"outbound {target_port}", OK if error is None else WARN,
                                  f"{target_host}:{target_port} reachable" if error is None
                                  else f"{target_host}:{target_port}: {error}; {why} will fail or skip"))
    return results


def report(results: list[Result]) -> tuple[str, int]:
    width = max(len(r.name) for r in results)
    lines = [f"{r.status:4}  {r.name:{width}}  {r.detail}" for r in results]
    return "\n".join(lines), 1 if any(r.status == FAIL for r in results) else 0


def master_address(value: str) -> tuple[str, int]:
    try:
        return parse_hostport(value, fleet.DEFAULT_PORT)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--master", type=master_address, default=(fleet.DEFAULT_MASTER, fleet.DEFAULT_PORT))
    parser.add_argument("--buildarea", default="/buildarea" if os.path.isdir("/buildarea") else ".")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    try:  # WORKER_MIN_FREE_GB as the worker reads it: a bad value is one line and exit 2 here too
        watch = disk.settings(dict(os.environ), args.buildarea)
        if os.path.exists(args.buildarea):  # else the disk check says why it cannot read it
            disk.check_fits(watch)
    except disk.SettingError as exc:
        print(f"preflight: error: {exc}", file=sys.stderr)
        return 2
    text, code = report(run(args.master, args.buildarea, timeout=args.timeout, watch=watch))
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
