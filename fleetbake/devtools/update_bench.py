"""`invoke bench-update`: what an update costs a worker, against the careful owner's hand-made drain.

With a local master and registry, a worker container run as the README says, and a build running each time:
- fleetbake: `python3 -I fleetbake/operate/update.py` (as a host runs it), --updates times, the registry's tag
  alternating between the row's verified image and that image with one file more (its report and records the
  verified image's, re-addressed: it is the same software);
- baseline: what a careful owner does by hand for the same (pull, `docker update --restart no`, touch the
  shutdown stamp, `docker wait`, `docker rm`, the same `docker run` on the new image), alternating with ours;
- roll-back: an image whose worker never connects, with a 30 s health bound: the time from the bound to the old
  worker connected again (the update's own log says it).

Figures, from the master's side (its REST API, sampled every 0.2 s): seconds the worker was disconnected per
update (the pull comes before the drain in both, so it is excluded), builds lost (a build not SUCCESS, or run
again), and the roll-back time. A complete run (at least 5 updates) writes the "Updates" section of
docs/benchmarks.md (bench.py keeps it when it writes the rest), else build/bench/updates.md.
"""

from __future__ import annotations

import datetime as dt
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from fleetbake import paths
from fleetbake.devtools import bench, local_registry, master as master_mod, worker_rig
from fleetbake.errors import FleetbakeError
from fleetbake.operate import update
from fleetbake.operate.buildbot_api import BuildbotApi, SUCCESS
from fleetbake.pipeline import engine, identity, publish, record
from fleetbake.pipeline.matrix import Matrix, RowView

WORKER = "bench-update"
MIN_UPDATES = 5
GOALS = {"disconnected": 20.0, "lost": 0, "rollback": 20.0}
SECTION = "updates"
UPDATE_PY = paths.ROOT / "fleetbake" / "operate" / "update.py"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def by_hand(name: str, argv: list[str], ref: str, user: str) -> None:
    """The careful owner's update, step by step: nothing of fleetbake's."""
    for step in (["docker", "pull", "--quiet", ref], ["docker", "update", "--restart", "no", name],
                 ["docker", "exec", "--user", user, name, "touch", update.STAMP], ["docker", "wait", name],
                 ["docker", "rm", name], [*argv[:-1], ref]):
        subprocess.run(step, check=True, capture_output=True)


def one(api: BuildbotApi, do) -> tuple[float, bool, float]:
    """A build running, then `do()`: (seconds disconnected, the build lost?, wall seconds of do)."""
    builderid, running = worker_rig.start_build(api, f"{WORKER}-sleep")
    with worker_rig.Disconnections(api, WORKER) as watch:
        started = time.monotonic()
        do()
        took = time.monotonic() - started
        api.wait_connected(WORKER)
        time.sleep(0.5)  # the watcher's last sample
    done = worker_rig.finished(api, running["buildid"])
    again = api.get(f"builders/{builderid}/builds?number__gt={running['number']}")["builds"]
    return max(watch.gaps, default=float("nan")), done["results"] != SUCCESS or bool(again), took


def run(matrix: Matrix, row: RowView, updates: int = MIN_UPDATES, log=print) -> Path:
    # The bench publishes this host's architecture alone (publish wants every one of the row's otherwise).
    row = replace(row, spec=row.spec.model_copy(update={"arches": [row.arch]}))
    image = identity.image_tag(row)
    verified = engine.client().images.get(image).id
    passed, failed = record.status(verified)
    if failed or not passed or not (record.image_dir(verified) / publish.REPORT_LAYERS[0][0]).is_file():
        raise FleetbakeError(f"{image} ({verified[:19]}) needs a passing verification record and a report: "
                             f"`invoke verify --os {row.name}` and `invoke report --os {row.name}` first")
    scratch = Path(tempfile.mkdtemp(prefix="fleetbake-bench-update."))
    name, volume = f"fbbench-{uuid.uuid4().hex[:8]}", f"fbbench-{uuid.uuid4().hex[:8]}-buildarea"
    master = master_mod.start({WORKER: uuid.uuid4().hex}, row.spec.cpython, directory=scratch / "master",
                              pb_port=local_registry.free_port(), www_port=local_registry.free_port(),
                              git_port=local_registry.free_port(), log=log)
    api = BuildbotApi(master.url)
    runs: dict[str, list[tuple[float, bool, float]]] = {"fleetbake": [], "baseline": []}
    rollbacks: list[float] = []
    made_images: list[str] = []
    try:
        with local_registry.serve(scratch / "registry") as registry:
            repository = f"{registry}/bench/worker"
            other = worker_rig.derived_image(verified, "RUN echo other > /etc/fleetbake-variant")
            silent = worker_rig.derived_image(verified, 'ENTRYPOINT ["sleep", "infinity"]')
            made_images += [other, silent]
            for tag in identity.image_tags(row):
                engine.client().api.tag(verified, *tag.split(":"))
            publish.publish(matrix, [row], f"{registry}/bench", log=lambda _: None)
            pushes = {verified: lambda: publish.publish(matrix, [row], f"{registry}/bench", log=lambda _: None),
                      other: lambda: worker_rig.push_with_records(registry, "bench", other, verified, scratch / "b")}
            argv = worker_rig.docker_run_argv(name, verified, master, WORKER, volume)
            subprocess.run(argv, check=True, capture_output=True)
            api.wait_connected(WORKER)
            current = verified
            for n, side in bench.alternation(updates):
                target = other if current == verified else verified
                pushes[target]()
                log(f"update {n}/{updates} ({side}): {current[:19]} -> {target[:19]}, a build running")
                if side == "fleetbake":
                    def do():
                        result = subprocess.run([PYTHON, "-I", str(UPDATE_PY), "--container", name, "--registry",
                                                 f"{registry}/bench", "--state-dir", str(scratch / "state")],
                                                capture_output=True, text=True)
                        if result.returncode:
                            raise FleetbakeError(f"update.py failed ({result.returncode}): {result.stderr[-500:]}")
                else:
                    def do():
                        by_hand(name, argv, f"{repository}:{row.name}", row.spec.user)
                runs[side].append(one(api, do))
                worker_rig.remove(name + update.PREVIOUS)
                current = target
                log(f"  disconnected {runs[side][-1][0]:.1f}s, lost: {runs[side][-1][1]}, took {runs[side][-1][2]:.0f}s")
            worker_rig.push_with_records(registry, "bench", silent, verified, scratch / "b")
            for n in range(3):
                result = subprocess.run([PYTHON, "-I", str(UPDATE_PY), "--container", name, "--registry",
                                         f"{registry}/bench", "--state-dir", str(scratch / "state"),
                                         "--health-timeout", "30", "--retry"], capture_output=True, text=True)
                found = re.search(r"connected again ([0-9.]+)s after the roll-back began", result.stdout)
                if result.returncode != update.ROLLED_BACK or not found:
                    raise FleetbakeError(f"the roll-back run did not roll back: {result.stdout[-500:]}{result.stderr[-500:]}")
                rollbacks.append(float(found.group(1)))
                log(f"roll-back {n + 1}/3: {rollbacks[-1]:.1f}s beyond the 30 s bound")
    finally:
        worker_rig.remove(name, volume)
        master_mod.stop(directory=scratch / "master", log=lambda _: None)
        for made in made_images:
            subprocess.run(["docker", "image", "rm", "--force", made], capture_output=True, check=False)
    text = section(runs, rollbacks, updates, row)
    target = bench.REPORT if updates >= MIN_UPDATES else bench.bench_dir() / "updates.md"
    bench.put_section(target, SECTION, text)
    log(f"wrote {target}")
    return target


def section(runs, rollbacks, updates, row) -> str:
    def cell(values):
        return f"{statistics.median(values):.1f} s ({min(values):.1f}–{max(values):.1f})" if values else "–"

    ours, theirs = runs["fleetbake"], runs["baseline"]
    lost = sum(lost for _, lost, _ in ours)
    gap = max((g for g, _, _ in ours), default=float("nan"))  # the goal holds for every update, not the median
    back = max(rollbacks, default=float("nan"))
    lines = [
        "## Updates (`invoke bench-update`)",
        "",
        f"Written by `invoke bench-update --updates {updates}` (fleetbake/devtools/update_bench.py) on "
        f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, revision "
        f"{bench.revision().describe()}, row {row.name}. Each update with a 20 s build running; the two sides "
        "alternate (fleetbake, by hand, ...); the worker's disconnection as the master saw it.",
        "",
        "| figure | fleetbake median (min–max) | by hand median (min–max) | goal | verdict |",
        "|---|---|---|---|---|",
        f"| seconds disconnected after the drained build ends, per update, pull excluded (goal on the worst) | "
        f"{cell([g for g, _, _ in ours])} | {cell([g for g, _, _ in theirs])} | ≤ 20 s | "
        f"{'met' if gap <= GOALS['disconnected'] else 'MISSED'} |",
        f"| builds lost across {len(ours)} updates (by hand: {len(theirs)}) | {lost} | "
        f"{sum(lost for _, lost, _ in theirs)} | 0 | {'met' if lost == 0 and len(ours) >= MIN_UPDATES else 'MISSED'} |",
        f"| time to roll back, beyond the 30 s health bound ({len(rollbacks)} runs; the figure is the worst) | "
        f"{cell(rollbacks)} | – | ≤ 20 s | {'met' if back <= GOALS['rollback'] else 'MISSED'} |",
        f"| wall time of the whole update (drain of a 20 s build included) | {cell([t for _, _, t in ours])} | "
        f"{cell([t for _, _, t in theirs])} | – | – |",
        "",
        "The baseline is the update a careful owner makes by hand, with the same drain: `docker pull`, `docker "
        "update --restart no`, `docker exec --user buildbot W touch /buildarea/shutdown.stamp`, `docker wait`, "
        "`docker rm`, the same `docker run` on the new image. It has no check of the image's verification, no health "
        "gate, no roll-back and no crash recovery; fleetbake's extra disconnected time pays for those (the "
        "inspection, the rename and the health probe). A plain `docker stop` instead of the drain would interrupt "
        "the running build: every update would lose one.",
    ]
    return "\n".join(lines)
