"""Service files for plain hosts: valid for the tools that will read them, and free of secrets."""

import plistlib
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, invoke, snapshot
from fleetbake.errors import UsageError
from fleetbake.operate import service


@pytest.fixture
def venv(tmp_path):
    twistd = tmp_path / "venv" / "bin" / "twistd"
    twistd.parent.mkdir(parents=True)
    twistd.write_text("#!/bin/sh\n")
    twistd.chmod(0o755)
    return tmp_path / "venv"


def systemd_verify(unit):
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is not installed"
    return subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True, check=False)


def test_linux_unit_is_hardened_and_passes_systemd_analyze(tmp_path, venv):
    s = service.settings("linux", "owner-debian12-x86_64", admin="Jane <j@x.org>", venv=str(venv), buildarea=str(tmp_path))
    files = service.write(s, tmp_path / "out")
    unit = files["buildbot-worker.service"].read_text()
    for line in ("User=buildbot", "Restart=always", "NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                 "LoadCredential=workerpass:/etc/buildbot-worker/workerpass", f"ReadWritePaths={tmp_path}"):
        assert line in unit.splitlines()
    result = systemd_verify(files["buildbot-worker.service"])
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(unit.replace("Restart=always", "Restart=sometimes"))
    assert "Failed to parse service restart specifier" in systemd_verify(broken).stderr
    cron = files["crontab"].read_text().splitlines()[-1]
    assert cron == f"@reboot buildbot WORKERPASS_FILE=/etc/buildbot-worker/workerpass {venv}/bin/buildbot-worker restart {tmp_path}"


def test_macos_launch_daemon_matches_the_devguide(tmp_path):
    files = service.write(service.settings("macos", "owner-macos-arm64"), tmp_path)
    plist = plistlib.loads(files["net.buildbot.worker.plist"].read_bytes())
    assert plist["Label"] == "net.buildbot.worker" and plist["UserName"] == "buildbot"
    assert plist["KeepAlive"] is True and plist["SessionCreate"] is True
    assert plist["ProgramArguments"] == ["/Users/buildbot/bin/run_worker.sh"]
    script = files["run_worker.sh"]
    assert script.stat().st_mode & 0o111
    assert "exec twistd --nodaemon --pidfile= --python=buildbot.tac" in script.read_text()
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_windows_task_starts_at_boot_and_restarts(tmp_path):
    files = service.write(service.settings("windows", "owner-win2022-x86_64"), tmp_path)
    ns = {"t": service.TASK_NS}
    task = ET.parse(files["buildbot-worker-task.xml"]).getroot()
    assert task.tag == f"{{{service.TASK_NS}}}Task"
    assert task.find("t:Triggers/t:BootTrigger/t:Enabled", ns).text == "true"
    assert task.find("t:Principals/t:Principal/t:UserId", ns).text == "buildbot"
    assert task.find("t:Principals/t:Principal/t:RunLevel", ns).text == "LeastPrivilege"
    assert task.find("t:Actions/t:Exec/t:Command", ns).text == "C:\\buildbot-worker\\Scripts\\twistd.exe"
    assert task.find("t:Settings/t:RestartOnFailure/t:Count", ns).text == "999"


@pytest.fixture
def checkout(tmp_path):
    """A fleetbake checkout with its .venv, as scripts/setup.sh leaves it."""
    python = tmp_path / "fleetbake" / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    return tmp_path / "fleetbake"


def test_linux_image_pruning_is_a_daily_timer_that_passes_systemd_analyze(tmp_path, checkout):
    files = service.write(service.settings("linux", "owner-debian12-x86_64", checkout=str(checkout)), tmp_path / "out")
    unit, timer = files["fleetbake-image-prune.service"], files["fleetbake-image-prune.timer"]
    lines = unit.read_text().splitlines()
    assert f"ExecStart={checkout}/.venv/bin/python -I {checkout}/fleetbake/operate/prune.py --delete" in lines
    assert "Type=oneshot" in lines and "After=docker.service" in lines
    timer_lines = timer.read_text().splitlines()
    assert {"OnCalendar=daily", "Persistent=true", "WantedBy=timers.target"} <= set(timer_lines)
    assert not [line for line in timer_lines if line.startswith("Unit=")]  # it starts the service of its own name
    for path in (unit, timer):
        result = systemd_verify(path)
        assert result.returncode == 0 and not result.stderr.strip(), (path.name, result.stderr)
    broken = tmp_path / "broken" / "fleetbake-image-prune.timer"
    broken.parent.mkdir()
    broken.write_text(timer.read_text().replace("OnCalendar=daily", "OnCalendar=nightly"))
    assert "Failed to parse calendar specification" in systemd_verify(broken).stderr
    # The command the timer runs is the checkout's own prune.py: the unit names no other.
    assert service.settings("linux", "w").checkout == str(ROOT)


def test_linux_and_macos_update_the_worker_containers_daily(tmp_path, checkout):
    files = service.write(service.settings("linux", "owner-debian12-x86_64", checkout=str(checkout)), tmp_path / "out")
    unit, timer = files["fleetbake-worker-update.service"], files["fleetbake-worker-update.timer"]
    lines = unit.read_text().splitlines()
    assert f"ExecStart={checkout}/.venv/bin/python -I {checkout}/fleetbake/operate/update.py" in lines
    # A drain waits for the running build: no start timeout may kill the update half-way.
    assert {"Type=oneshot", "After=docker.service", "TimeoutStartSec=infinity"} <= set(lines)
    assert {"OnCalendar=*-*-* 23:00:00", "Persistent=true", "WantedBy=timers.target"} <= set(timer.read_text().splitlines())
    for path in (unit, timer):
        result = systemd_verify(path)
        assert result.returncode == 0 and not result.stderr.strip(), (path.name, result.stderr)

    mac = service.write(service.settings("macos", "owner-macos-arm64", checkout="/Users/jane/fleetbake"), tmp_path / "m")
    plist = plistlib.loads(mac["net.buildbot.fleetbake-worker-update.plist"].read_bytes())
    assert plist["ProgramArguments"] == ["/Users/jane/fleetbake/.venv/bin/python", "-I",
                                         "/Users/jane/fleetbake/fleetbake/operate/update.py"]
    assert plist["StartCalendarInterval"] == {"Hour": 3, "Minute": 30}  # the pruning's is 04:30
    assert "UserName" not in plist and plist["StandardOutPath"] == "/var/log/fleetbake-worker-update.log"

    # A worker run from a locally built image names no registry: the owner gives it, or every run fails.
    s = service.settings("linux", "w", checkout=str(checkout), registry="ghcr.io/python/")
    assert s.update_command()[-2:] == ["--registry", "ghcr.io/python"]
    with pytest.raises(UsageError, match=r"--registry 'ghcr.io:50o0/python': expected HOST\[:PORT\]/NAMESPACE"):
        service.settings("linux", "w", registry="ghcr.io:50o0/python")


def test_macos_and_windows_prune_daily_with_the_same_command(tmp_path):
    mac = service.write(service.settings("macos", "owner-macos-arm64", checkout="/Users/jane/fleetbake"), tmp_path / "m")
    plist = plistlib.loads(mac["net.buildbot.fleetbake-image-prune.plist"].read_bytes())
    assert plist["Label"] == "net.buildbot.fleetbake-image-prune"
    assert plist["ProgramArguments"] == ["/Users/jane/fleetbake/.venv/bin/python", "-I",
                                         "/Users/jane/fleetbake/fleetbake/operate/prune.py", "--delete"]
    assert plist["StartCalendarInterval"] == {"Hour": 4, "Minute": 30}
    assert "UserName" not in plist  # root: Docker Desktop's /var/run/docker.sock
    assert "/usr/local/bin" in plist["EnvironmentVariables"]["PATH"].split(":")

    win = service.write(service.settings("windows", "owner-win2022-x86_64", checkout="C:\\Program Files\\fleetbake"),
                        tmp_path / "w")
    ns = {"t": service.TASK_NS}
    task = ET.parse(win["fleetbake-image-prune-task.xml"]).getroot()
    trigger = task.find("t:Triggers/t:CalendarTrigger", ns)
    assert trigger.find("t:ScheduleByDay/t:DaysInterval", ns).text == "1"
    assert [child.tag.split("}")[1] for child in trigger] == ["StartBoundary", "Enabled", "RandomDelay", "ScheduleByDay"]
    assert task.find("t:Principals/t:Principal/t:UserId", ns).text == "S-1-5-18"  # SYSTEM: Docker's engine pipe
    assert task.find("t:Settings/t:StartWhenAvailable", ns).text == "true"
    assert task.find("t:Actions/t:Exec/t:Command", ns).text == "C:\\Program Files\\fleetbake\\.venv\\Scripts\\python.exe"
    assert task.find("t:Actions/t:Exec/t:Arguments", ns).text == \
        '-I "C:\\Program Files\\fleetbake\\fleetbake\\operate\\prune.py" --delete'
    # Written on Linux, a Windows task gets a Windows path, not this checkout's.
    assert service.settings("windows", "w").checkout == "C:\\fleetbake"


@pytest.mark.parametrize("platform", ["linux", "macos", "windows"])
def test_the_tac_reads_the_password_file_and_holds_no_secret(tmp_path, platform):
    files = service.write(service.settings(platform, "w1", master="m.example.org:9989", admin="A <a@x>"), tmp_path)
    tac = files["buildbot.tac"].read_text()
    compile(tac, "buildbot.tac", "exec")
    assert "'m.example.org',\n    9989," in tac and "maxRetries=None" in tac and "60,  # keepalive" in tac
    assert 'os.environ.get("WORKERPASS_FILE"' in tac
    for content in (p.read_bytes() for p in files.values()):
        assert b"WORKERPASS=" not in content


GOOD = ["--platform", "linux", "--name", "owner-debian12-x86_64", "--admin", "Jane <j@x.org>"]


@pytest.mark.parametrize("change, message", [
    ({"--platform": "solaris"}, "error: --platform 'solaris': expected one of linux, macos, windows"),
    ({"--name": "bad name"}, "error: --name 'bad name': "),
    ({"--master": "m:port"}, "error: --master 'm:port': "),
    ({"--admin": "a\nb"}, "error: --admin: one line, at most 200 characters"),
    ({"--user": "Root"}, "error: --user 'Root': not a user name"),
    ({"--buildarea": "/tmp/x'; rm -rf /"}, "error: --buildarea \"/tmp/x'; rm -rf /\": not a plain path"),
    ({"--password-file": "/etc/pw\n"}, "error: --password-file '/etc/pw\\n': not a plain path"),
    ({"--checkout": "/srv/$(reboot)"}, "error: --checkout '/srv/$(reboot)': not a plain path"),
    ({"--checkout": "/srv/my fleetbake"}, "error: --checkout '/srv/my fleetbake': a path with a space breaks the systemd"),
])
def test_bad_settings_are_refused_and_the_previous_files_kept(change, message, tmp_path):
    """`invoke service --out DIR` into a directory holding a previous good run and the owner's own file."""
    out = tmp_path / "service"
    first = invoke("service", *GOOD, "--out", str(out), env={"FLEETBAKE_BUILD_DIR": str(tmp_path / "b")})
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in out.iterdir()) == ["buildbot-worker.service", "buildbot.tac", "crontab",
                                                     "fleetbake-image-prune.service", "fleetbake-image-prune.timer",
                                                     "fleetbake-worker-update.service", "fleetbake-worker-update.timer"]
    (out / "buildbot-worker.service").write_text((out / "buildbot-worker.service").read_text() + "# owner's tweak\n")
    (out / "workerpass.README").write_text("the password lives in /etc/buildbot-worker/workerpass\n")
    before = snapshot(out)

    options = dict(zip(GOOD[::2], GOOD[1::2]))
    options.update(change)
    args = [item for pair in options.items() for item in pair]
    result = invoke("service", *args, "--out", str(out), env={"FLEETBAKE_BUILD_DIR": str(tmp_path / "b")})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == [result.stderr.rstrip("\n")] and result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert snapshot(out) == before
    assert not (tmp_path / "b").exists()
