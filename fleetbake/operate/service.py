"""Service files for the devguide's "conventional always-on machines" (no containers).

`invoke service --platform linux|macos|windows --name W` writes, from the same
settings: a buildbot.tac that reads the password from a file, and
- linux: a hardened systemd unit, and the devguide's `@reboot` crontab line;
- macos: the LaunchDaemon plist (net.buildbot.worker) and run_worker.sh;
- windows: a Task Scheduler XML that starts the worker at boot.
No secret is ever written: the files point at a password file.

For hosts that also run fleetbake images, each platform gets a daily job that runs
fleetbake/operate/prune.py from the checkout (old worker images no container uses go, the
newest of each row stays): a systemd service and timer, a LaunchDaemon with
StartCalendarInterval, a Scheduled Task with a daily trigger. Linux and macOS hosts also get
a daily fleetbake/operate/update.py an hour before it (the worker containers move to the
image their row's registry tag names, drained, health-gated, rolled back on failure).
"""

from __future__ import annotations

import plistlib
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import jinja2

from fleetbake import paths
from fleetbake.errors import UsageError
from fleetbake.files import write_file
from fleetbake.pipeline import registry as oci
from fleetbake.worker import fleet
from fleetbake.worker.hostport import parse_hostport


TASK_NS = "http://schemas.microsoft.com/windows/2004/02/mit/task"
PRUNE_SCRIPT = ("fleetbake", "operate", "prune.py")
PRUNE_LABEL = "net.buildbot.fleetbake-image-prune"
UPDATE_SCRIPT = ("fleetbake", "operate", "update.py")
UPDATE_LABEL = "net.buildbot.fleetbake-worker-update"
# Docker Desktop's CLI (Intel and Apple silicon Homebrew prefixes), for launchd's bare PATH.
MACOS_PATH = "/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin"
DEFAULTS = {
    "linux": {"buildarea": "/home/buildbot/buildarea", "venv": "/opt/buildbot-worker",
              "password_file": "/etc/buildbot-worker/workerpass"},
    "macos": {"buildarea": "/Users/buildbot/buildarea", "venv": "/Users/buildbot/buildbot-worker",
              "password_file": "/Users/buildbot/.workerpass"},
    "windows": {"buildarea": "C:\\buildarea", "venv": "C:\\buildbot-worker",
                "password_file": "C:\\ProgramData\\buildbot-worker\\workerpass"},
}
# Where the image pruning finds fleetbake when `invoke service` writes another platform's files; for its own
# platform, the default is the checkout it runs from.
CHECKOUTS = {"linux": "/srv/fleetbake", "macos": "/Users/buildbot/fleetbake", "windows": "C:\\fleetbake"}
SAFE_PATH = re.compile(r"[A-Za-z0-9_./:\\ -]+")


@dataclass(frozen=True)
class Settings:
    platform: str
    name: str
    master_host: str
    master_port: int
    admin: str
    user: str
    buildarea: str
    venv: str
    password_file: str
    checkout: str  # the fleetbake checkout the image pruning runs from
    registry: str = ""  # where the daily update looks (default: where each container's image came from)

    def prune_command(self) -> list[str]:
        """The checkout's Python (-I: nothing but the standard library) on the checkout's prune.py, deleting."""
        return self.script_command(PRUNE_SCRIPT, "--delete")

    def update_command(self) -> list[str]:
        """The same Python on update.py: every worker container, each from the registry its image came from."""
        return self.script_command(UPDATE_SCRIPT, *(["--registry", self.registry] if self.registry else []))

    def script_command(self, script: tuple[str, ...], *arguments: str) -> list[str]:
        if self.platform == "windows":
            base = self.checkout.rstrip("\\")
            return [f"{base}\\.venv\\Scripts\\python.exe", "-I", "\\".join((base, *script)), *arguments]
        base = self.checkout.rstrip("/")
        return [f"{base}/.venv/bin/python", "-I", "/".join((base, *script)), *arguments]


def settings(platform: str, name: str, master: str = fleet.DEFAULT_ADDRESS, admin: str = "",
             user: str = "buildbot", buildarea: str | None = None, venv: str | None = None,
             password_file: str | None = None, checkout: str | None = None, registry: str = "") -> Settings:
    if platform not in DEFAULTS:
        raise UsageError(f"--platform {platform!r}: expected one of {', '.join(DEFAULTS)}")
    if not fleet.is_worker_name(name):
        raise UsageError(f"--name {name!r}: Buildbot takes at most 50 letters, digits, '_' and '-', not starting with a digit")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]*", user):
        raise UsageError(f"--user {user!r}: not a user name")
    try:
        host, port = parse_hostport(master, fleet.DEFAULT_PORT)
    except ValueError as exc:
        raise UsageError(f"--master {exc}") from None
    if "\n" in admin or len(admin) > 200:
        raise UsageError("--admin: one line, at most 200 characters")
    here = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform)
    default_checkout = str(paths.ROOT) if platform == here else CHECKOUTS[platform]
    chosen = {**DEFAULTS[platform], "checkout": default_checkout, **{k: v for k, v in
              {"buildarea": buildarea, "venv": venv, "password_file": password_file, "checkout": checkout}.items() if v}}
    for key, value in chosen.items():
        if not SAFE_PATH.fullmatch(value):
            raise UsageError(f"--{key.replace('_', '-')} {value!r}: not a plain path")
        if platform == "linux" and " " in value:  # ExecStart=, WorkingDirectory= and crontab lines split at spaces
            raise UsageError(f"--{key.replace('_', '-')} {value!r}: a path with a space breaks the systemd units and "
                             "the crontab line; choose one without")
    registry = registry.rstrip("/")
    if registry and not oci.REGISTRY_NAMESPACE.fullmatch(registry):
        raise UsageError(f"--registry {registry!r}: expected HOST[:PORT]/NAMESPACE, e.g. ghcr.io/python")
    return Settings(platform, name, host, port, admin, user, **chosen, registry=registry)


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(paths.IMAGES / "service")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["pyrepr"] = repr
    return env


def render(s: Settings) -> dict[str, bytes]:
    env = _templates()
    values = {**vars(s), "prune_command": " ".join(s.prune_command()), "update_command": " ".join(s.update_command())}
    files = {"buildbot.tac": env.get_template("buildbot.tac.j2").render(values).encode()}
    if s.platform == "linux":
        files["buildbot-worker.service"] = env.get_template("buildbot-worker.service.j2").render(values).encode()
        files["crontab"] = env.get_template("crontab.j2").render(values).encode()
        for unit in ("fleetbake-image-prune.service", "fleetbake-image-prune.timer", "fleetbake-worker-update.service",
                     "fleetbake-worker-update.timer"):
            files[unit] = env.get_template(f"{unit}.j2").render(values).encode()
    elif s.platform == "macos":
        files["run_worker.sh"] = env.get_template("run_worker.sh.j2").render(values).encode()
        files["net.buildbot.worker.plist"] = launch_daemon(s)
        files[f"{PRUNE_LABEL}.plist"] = prune_launch_daemon(s)
        files[f"{UPDATE_LABEL}.plist"] = daily_launch_daemon(UPDATE_LABEL, s.update_command(), 3,
                                                             "/var/log/fleetbake-worker-update.log")
    else:
        files["buildbot-worker-task.xml"] = scheduled_task(s)
        files["fleetbake-image-prune-task.xml"] = prune_task(s)
    return files


def launch_daemon(s: Settings) -> bytes:
    """The devguide's LaunchDaemon, built with plistlib so that it is valid by construction."""
    home = str(Path(s.buildarea).parent)
    return plistlib.dumps({
        "Label": "net.buildbot.worker",
        "UserName": s.user,
        "WorkingDirectory": s.buildarea,
        "ProgramArguments": [f"{home}/bin/run_worker.sh"],
        "StandardOutPath": "twistd.log",
        "StandardErrorPath": "twistd.log",
        "KeepAlive": True,
        "SessionCreate": True,
    })


def prune_launch_daemon(s: Settings) -> bytes:
    """Image pruning once a day at 04:30, as root (Docker Desktop's /var/run/docker.sock), logged to /var/log."""
    return daily_launch_daemon(PRUNE_LABEL, s.prune_command(), 4, "/var/log/fleetbake-image-prune.log")


def daily_launch_daemon(label: str, command: list[str], hour: int, log: str) -> bytes:
    """A root LaunchDaemon running `command` daily at hour:30 (updates at 03:30, before the pruning)."""
    return plistlib.dumps({
        "Label": label,
        "ProgramArguments": command,
        "StartCalendarInterval": {"Hour": hour, "Minute": 30},
        "EnvironmentVariables": {"PATH": MACOS_PATH},
        "StandardOutPath": log,
        "StandardErrorPath": log,
    })


def _sub(parent, tag, text=None, **attrs):
    element = ET.SubElement(parent, f"{{{TASK_NS}}}{tag}", attrs)
    if text is not None:
        element.text = text
    return element


def prune_task(s: Settings) -> bytes:
    """A Task Scheduler task: image pruning daily at 04:30 (up to an hour later), as SYSTEM (Docker's engine pipe)."""
    ET.register_namespace("", TASK_NS)
    sub = _sub
    task = ET.Element(f"{{{TASK_NS}}}Task", {"version": "1.2"})
    sub(sub(task, "RegistrationInfo"), "Description",
        "Remove old fleetbake worker images that no container uses; the newest of each row stays (written by fleetbake)")
    trigger = sub(sub(task, "Triggers"), "CalendarTrigger")
    sub(trigger, "StartBoundary", "2000-01-01T04:30:00")
    sub(trigger, "Enabled", "true")
    sub(trigger, "RandomDelay", "PT1H")
    sub(sub(trigger, "ScheduleByDay"), "DaysInterval", "1")
    principal = sub(sub(task, "Principals"), "Principal", id="Author")
    sub(principal, "UserId", "S-1-5-18")  # SYSTEM
    sub(principal, "RunLevel", "HighestAvailable")
    settings_el = sub(task, "Settings")
    sub(settings_el, "MultipleInstancesPolicy", "IgnoreNew")
    sub(settings_el, "DisallowStartIfOnBatteries", "false")
    sub(settings_el, "StartWhenAvailable", "true")  # a missed day runs when the machine is back
    sub(settings_el, "ExecutionTimeLimit", "PT1H")
    execute = sub(sub(task, "Actions", Context="Author"), "Exec")
    program, *arguments = s.prune_command()
    sub(execute, "Command", program)
    sub(execute, "Arguments", " ".join(f'"{a}"' if " " in a else a for a in arguments))
    ET.indent(task)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(task) + b"\n"


def scheduled_task(s: Settings) -> bytes:
    """A Task Scheduler task: start the worker at boot as the buildbot user, restart on failure."""
    ET.register_namespace("", TASK_NS)
    sub = _sub

    task = ET.Element(f"{{{TASK_NS}}}Task", {"version": "1.2"})
    info = sub(task, "RegistrationInfo")
    sub(info, "Description", f"CPython buildbot worker {s.name} (written by fleetbake)")
    sub(sub(sub(task, "Triggers"), "BootTrigger"), "Enabled", "true")
    principal = sub(sub(task, "Principals"), "Principal", id="Author")
    sub(principal, "UserId", s.user)
    sub(principal, "LogonType", "Password")
    sub(principal, "RunLevel", "LeastPrivilege")
    settings_el = sub(task, "Settings")
    sub(settings_el, "MultipleInstancesPolicy", "IgnoreNew")
    sub(settings_el, "DisallowStartIfOnBatteries", "false")
    sub(settings_el, "ExecutionTimeLimit", "PT0S")
    restart = sub(settings_el, "RestartOnFailure")
    sub(restart, "Interval", "PT1M")
    sub(restart, "Count", "999")
    actions = sub(task, "Actions", Context="Author")
    execute = sub(actions, "Exec")
    sub(execute, "Command", f"{s.venv}\\Scripts\\twistd.exe")
    sub(execute, "Arguments", "--nodaemon --pidfile= --python=buildbot.tac --logfile=twistd.log")
    sub(execute, "WorkingDirectory", s.buildarea)
    ET.indent(task)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(task) + b"\n"


def write(s: Settings, out_dir: Path | None = None) -> dict[str, Path]:
    out = Path(out_dir) if out_dir else paths.build_dir() / "service" / s.platform
    files = render(s)  # all of it first: bad input leaves nothing half-written
    for name, content in files.items():
        # File by file, not render.write_context: --out may hold files of the owner's own.
        write_file(out / name, content, 0o755 if name.endswith(".sh") else 0o644)
    return {name: out / name for name in files}
