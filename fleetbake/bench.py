"""Speed and size against hand-written baselines, run side by side on this machine.

(a) cold build: fleetbake (no layer cache) vs `docker build --no-cache` of bench/baseline.Dockerfile
(b) no-op `invoke build` when nothing changed (wall time, Python start-up included)
(c) image size vs that baseline image
(d) `invoke verify` (pydebug) vs a raw `docker run` of the same commands
Figures are printed and written to docs/benchmarks.md; nothing is asserted.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from . import build, cpython, engine, paths, render, verify
from .matrix import Matrix, RowView

Log = Callable[[str], None]
BASELINE_TAG = "fleetbake-bench/baseline:debian-12"


def _timed(func: Callable[[], object]) -> float:
    started = time.monotonic()
    func()
    return time.monotonic() - started


def _run(argv: list[str], **kwargs: object) -> None:
    subprocess.run(argv, check=True, **kwargs)


def baseline_context(row: RowView, certs: list[bytes] | None) -> Path:
    ctx = paths.build_dir() / "bench" / "baseline"
    ctx.mkdir(parents=True, exist_ok=True)
    shutil.copy(paths.ROOT / "bench" / "baseline.Dockerfile", ctx / "Dockerfile")
    (ctx / "extra-ca.crt").write_bytes(b"".join(certs or []))
    return ctx


def cold_builds(matrix: Matrix, row: RowView, log: Log) -> tuple[float, float, str]:
    certs = render.ca_certs_from(None)
    packages = " ".join([*render.FAMILIES[row.spec.family].runtime_packages, *row.all_packages])
    ctx = baseline_context(row, certs)
    quiet: Log = lambda line: None  # noqa: E731
    log("bench (a): cold fleetbake build (no layer cache)")
    result: list[build.BuildResult] = []
    ours = _timed(lambda: result.append(build.build_row(matrix, row, ca_certs=certs, force=True, log=quiet)))
    log(f"bench (a): fleetbake {ours:.1f}s; now docker build --no-cache of the hand-written Dockerfile")
    theirs = _timed(lambda: _run(
        ["docker", "build", "--no-cache", "-q", "-t", BASELINE_TAG, "--build-arg", f"PACKAGES={packages}", str(ctx)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"}, stdout=subprocess.DEVNULL,
    ))
    log(f"bench (a): baseline {theirs:.1f}s")
    return ours, theirs, result[0].image_id


def noop_build(matrix_path: str, row: RowView) -> float:
    invoke = [sys.executable, "-m", "invoke", "build", "--os", row.name, "--matrix", matrix_path]
    _run(invoke, cwd=paths.ROOT, stdout=subprocess.DEVNULL)  # warm
    return min(_timed(lambda: _run(invoke, cwd=paths.ROOT, stdout=subprocess.DEVNULL)) for _ in range(3))


def raw_verify(row: RowView, image_id: str, source: cpython.Source, jobs: int) -> float:
    config = row.configurations["pydebug"]
    steps = verify.plan(config, source, jobs)
    script = " && ".join(
        shlex.join(argv) if name == "unpack" else f"cd {verify.WORK} && {shlex.join(argv)}" for name, argv in steps
    )
    argv = [
        "docker", "run", "--rm", "--network", "none", "--user", f"{row.spec.uid}:{row.spec.uid}",
        "-v", f"{source.path}:{verify.SOURCE_MOUNT}/{source.path.name}:ro", "-e", "BUILDBOT=1", "-e", "TERM=xterm",
        image_id, "sh", "-c", script,
    ]
    return _timed(lambda: _run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def run(matrix: Matrix, row: RowView, skip_cold: bool = False, log: Log = print) -> str:
    figures = []
    if skip_cold:
        image_id = build.build_row(matrix, row, ca_certs=render.ca_certs_from(None), log=lambda _: None).image_id
    else:
        ours, theirs, image_id = cold_builds(matrix, row, log)
        figures.append(("(a) cold build", f"{ours:.1f} s", f"{theirs:.1f} s", ours / theirs, "<= 1.10"))

    log("bench (b): no-op invoke build, best of 3")
    noop = noop_build(str(matrix.path), row)
    figures.append(("(b) no-op build", f"{noop:.2f} s", "-", None, "<= 2 s"))

    if engine.image_id(BASELINE_TAG):
        ours_size = engine.client().images.get(image_id).attrs["Size"]
        theirs_size = engine.client().images.get(BASELINE_TAG).attrs["Size"]
        figures.append(("(c) image size", f"{ours_size / 1e6:.0f} MB", f"{theirs_size / 1e6:.0f} MB",
                        ours_size / theirs_size, "< 1.00"))

    jobs = os.cpu_count() or 2
    source = cpython.resolve(row.spec.cpython, log)
    log("bench (d): invoke verify --config pydebug")
    verify_results: list[verify.ConfigResult] = []
    ours_verify = _timed(lambda: verify_results.extend(verify.verify(matrix, row, ["pydebug"], jobs=jobs, log=lambda _: None)))
    log(f"bench (d): fleetbake {ours_verify:.1f}s (passed: {verify_results[0].passed}); now raw docker run")
    theirs_verify = raw_verify(row, image_id, source, jobs)
    figures.append(("(d) verify pydebug", f"{ours_verify:.0f} s", f"{theirs_verify:.0f} s",
                    ours_verify / theirs_verify, "<= 1.15"))

    table = _table(figures)
    report = _report(table, row)
    (paths.ROOT / "docs").mkdir(exist_ok=True)
    (paths.ROOT / "docs" / "benchmarks.md").write_text(report)
    log(table)
    log("written to docs/benchmarks.md")
    return table


def _table(figures: list[tuple[str, str, str, float | None, str]]) -> str:
    rows = [("figure", "fleetbake", "baseline", "ratio", "target")]
    rows += [(f, a, b, f"{r:.2f}" if r is not None else "-", t) for f, a, b, r, t in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _report(table: str, row: RowView) -> str:
    cpu = verify_cpu()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    docker_version = engine.client().version().get("Version", "?")
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "# Benchmarks\n\n"
        f"`invoke bench --os {row.name}` on {when}: {os.cpu_count()} x {cpu}, {memory:.0f} GiB RAM, "
        f"{platform.platform()}, Docker engine {docker_version}. Baselines: `bench/baseline.Dockerfile` "
        "(same packages, classic builder, `--no-cache`) and a raw `docker run` of the verify commands.\n\n"
        f"```\n{table}\n```\n"
    )


def verify_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
