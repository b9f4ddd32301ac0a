"""`invoke status`: is each worker connected to its master? For cron: non-zero when one is not."""

from __future__ import annotations

import shlex
from typing import Callable

from fleetbake import proc
from fleetbake.errors import UsageError
from fleetbake.operate.buildbot_api import BuildbotApi

Log = Callable[[str], None]


def check(master_url: str, names: list[str] | None = None, notify_cmd: str | None = None, log: Log = print) -> int:
    """Print each worker's state; run notify_cmd for each offline one; return the exit code."""
    api = BuildbotApi(master_url)
    workers = {w["name"]: w for w in api.workers()}
    wanted = names or sorted(workers)
    unknown = [n for n in wanted if n not in workers]
    if unknown:
        raise UsageError(f"{master_url}: unknown worker(s): {', '.join(unknown)} (known: {', '.join(sorted(workers)) or 'none'})")
    offline = []
    for name in wanted:
        worker = workers[name]
        connected = bool(worker.get("connected_to"))
        info = worker.get("workerinfo") or {}
        detail = f"version {info.get('version', '?')}, admin {info.get('admin', '?').strip()}" if connected else "not connected"
        log(f"{name:30} {'online' if connected else 'OFFLINE':8} {detail}")
        if not connected:
            offline.append(name)
    for name in offline if notify_cmd else []:
        # The command gets the name as an argument and in the environment, never through a shell string.
        # A failing notification is reported and the next worker still notified; the exit code says offline anyway.
        try:
            proc.run([*shlex.split(notify_cmd), name], timeout=60, stream=log, what=f"--notify-cmd for {name}",
                     env={"PATH": "/usr/local/bin:/usr/bin:/bin", "FLEETBAKE_WORKER": name, "FLEETBAKE_MASTER": master_url})
        except proc.ProcError as exc:
            log(str(exc))
    return 1 if offline else 0
