"""The runtime contract's logic, run on the host (the entrypoint is stdlib only)."""

import os
import pwd
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

ME = pwd.getpwuid(os.getuid())


def test_master_defaults_to_the_fleet(entrypoint):
    assert entrypoint.parse_master({}) == ("buildbot-api.python.org", 9020)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"BUILDMASTER": "master.example.org"}, ("master.example.org", 9020)),
        ({"BUILDMASTER": "master.example.org:9989"}, ("master.example.org", 9989)),
        ({"BUILDMASTER": "10.0.0.5", "BUILDMASTER_PORT": "9989"}, ("10.0.0.5", 9989)),
        ({"BUILDMASTER_PORT": "9021"}, ("buildbot-api.python.org", 9021)),
        ({"BUILDMASTER": "[::1]:9989"}, ("::1", 9989)),
        ({"BUILDMASTER": "m:9989", "BUILDMASTER_PORT": "9989"}, ("m", 9989)),
    ],
)
def test_master_overrides(entrypoint, env, expected):
    assert entrypoint.parse_master(env) == expected


@pytest.mark.parametrize(
    "env, message",
    [
        ({"BUILDMASTER": "m:9989", "BUILDMASTER_PORT": "1"}, "disagree on the port"),
        ({"BUILDMASTER_PORT": "http"}, "not a whole number"),
        ({"BUILDMASTER_PORT": "70000"}, "out of range"),
        ({"BUILDMASTER_PORT": "0x2334"}, "not a whole number"),
        ({"BUILDMASTER": "m; rm -rf /"}, "not a host name"),
        ({"BUILDMASTER": "m:0"}, "port '0' is not a number from 1 to 65535"),
        ({"BUILDMASTER": ":9989"}, "empty host"),
        ({"BUILDMASTER": "m:"}, "empty port"),
        ({"BUILDMASTER": "2001:db8::1"}, "needs brackets"),
        ({"BUILDMASTER": "2001:db8::1:9020"}, "needs brackets"),
        ({"BUILDMASTER": "[not-v6]:9020"}, "not an IPv6 address"),
        ({"BUILDMASTER": "300.1.1.1"}, "not an IPv4 address"),
    ],
)
def test_bad_master_settings(entrypoint, env, message):
    with pytest.raises(entrypoint.ConfigError, match=message):
        entrypoint.parse_master(env)


def test_settings_use_the_fleet_values(entrypoint):
    cfg = entrypoint.settings({"WORKERNAME": "owner-debian12-x86_64"})
    assert cfg.keepalive == 60  # the master's keepalive_interval; 600 causes disconnects
    assert cfg.maxretries == 10 and cfg.umask == 0o022 and cfg.basedir == "/buildarea"
    cfg = entrypoint.settings({"WORKERNAME": "w", "KEEPALIVE": "30", "MAXRETRIES": "none", "UMASK": "077"})
    assert (cfg.keepalive, cfg.maxretries, cfg.umask) == (30, None, 0o077)


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "WORKERNAME is not set"),
        ({"WORKERNAME": "bad name"}, "Buildbot takes at most 50"),
        ({"WORKERNAME": "owner.debian"}, "Buildbot takes at most 50"),  # the master's identifier rule has no dots
        ({"WORKERNAME": "1owner"}, "not starting with a digit"),
        ({"WORKERNAME": "w" * 51}, "at most 50"),
        ({"WORKERNAME": "w", "KEEPALIVE": "soon"}, "KEEPALIVE='soon' is not a whole number"),
        ({"WORKERNAME": "w", "KEEPALIVE": "600"}, "KEEPALIVE=600: use 10 to 60 seconds"),
        ({"WORKERNAME": "w", "KEEPALIVE": "0"}, "KEEPALIVE=0: use 10 to 60"),
        ({"WORKERNAME": "w", "MAXRETRIES": "0"}, "out of range"),
        ({"WORKERNAME": "w", "MAXRETRIES": "-1"}, "not a whole number"),
        ({"WORKERNAME": "w", "UMASK": "999"}, "not an octal mask"),
        ({"WORKERNAME": "w", "UMASK": "0o1777"}, "not an octal mask"),
        ({"WORKERNAME": "w", "UMASK": "077"}, None),
        ({"WORKERNAME": "w", "UMASK": "277"}, "masks the owner's own bits"),
        ({"WORKERNAME": "w", "WORKER_ADMIN": "a\nb"}, "WORKER_ADMIN: one line"),
        ({"WORKERNAME": "w", "WORKER_HOST_INFO": "x" * 3000}, "WORKER_HOST_INFO: at most 2048 bytes"),
    ],
)
def test_bad_settings(entrypoint, env, message):
    if message is None:  # the boundary that is still fine
        entrypoint.settings(env)
        return
    with pytest.raises(entrypoint.ConfigError, match=message):
        entrypoint.settings(env)


def test_password_from_env_or_file(entrypoint, tmp_path):
    assert entrypoint.read_password({"WORKERPASS": "s3cret"}, None) == b"s3cret"
    secret = tmp_path / "pass"
    secret.write_text("from-file\n")
    secret.chmod(0o400)
    assert entrypoint.read_password({"WORKERPASS_FILE": str(secret)}, None) == b"from-file"


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "no password"),
        ({"WORKERPASS": ""}, "no password"),
        ({"WORKERPASS": "a", "WORKERPASS_FILE": "/x"}, "not both"),
        ({"WORKERPASS_FILE": "/nonexistent/pass"}, "No such file"),
        ({"WORKERPASS": "a\rb"}, "single line"),
        ({"WORKERPASS": "a\0b"}, "without NUL"),
        ({"WORKERPASS": "x" * 1025}, "1025 bytes; at most 1024"),
    ],
)
def test_password_errors(entrypoint, env, message):
    with pytest.raises(entrypoint.ConfigError, match=message):
        entrypoint.read_password(env, None)


def test_a_password_file_the_build_user_could_read_is_refused(entrypoint, tmp_path):
    secret = tmp_path / "pass"
    secret.write_text("pw")
    secret.chmod(0o644)
    other_uid = 65534 if ME.pw_uid != 65534 else 0
    with pytest.raises(entrypoint.ConfigError, match="readable by the build user"):
        entrypoint.read_password({"WORKERPASS_FILE": str(secret)}, other_uid)
    secret.chmod(0o600)  # owned by us, not by the build user: fine
    assert entrypoint.read_password({"WORKERPASS_FILE": str(secret)}, other_uid) == b"pw"
    with pytest.raises(entrypoint.ConfigError, match="readable by the build user"):
        entrypoint.read_password({"WORKERPASS_FILE": str(secret)}, ME.pw_uid)  # the build user owns it


def test_builds_get_no_secret_but_do_get_buildbot_variables(entrypoint):
    env = {
        "WORKERPASS": "s3cret", "WORKERPASS_FILE": "/run/secrets/p", "WORKERPASS_FD": "3",
        "BUILDBOT_TESTOPTS": "-x test_gdb", "PATH": "/usr/bin", "MY_TOKEN": "t",
        "WORKER_ENVIRONMENT_BLACKLIST": "WORKERPASS MY_*",
    }
    clean = entrypoint.worker_environment(env, ME)
    assert not {"WORKERPASS", "WORKERPASS_FILE", "WORKERPASS_FD", "MY_TOKEN"} & set(clean)
    assert "s3cret" not in "".join(clean.values())
    assert clean["BUILDBOT_TESTOPTS"] == "-x test_gdb"
    assert clean["HOME"] == ME.pw_dir and clean["USER"] == ME.pw_name


def test_privilege_drop_is_irreversible(entrypoint):
    argv = entrypoint.drop_privileges_argv(ME, can_drop_bounding=True)
    assert argv[0] == "setpriv" and argv[-1] == "--"
    for flag in (f"--reuid={ME.pw_uid}", f"--regid={ME.pw_gid}", "--init-groups", "--no-new-privs",
                 "--inh-caps=-all", "--bounding-set=-all"):
        assert flag in argv
    assert "--bounding-set=-all" not in entrypoint.drop_privileges_argv(ME, can_drop_bounding=False)


def test_twistd_runs_without_pidfile_and_logs_to_stdout(entrypoint):
    argv = entrypoint.twistd_argv()
    assert "--pidfile=" in argv and "--logfile=-" in argv and "--nodaemon" in argv


def test_host_info_describes_the_real_machine(entrypoint):
    text = entrypoint.host_info("fleetbake/worker:debian-12", "4.3.0")
    assert f"CPU: {len(os.sched_getaffinity(0))} x " in text
    assert "fleetbake/worker:debian-12" in text and "buildbot-worker: 4.3.0" in text
    assert f"Kernel: Linux {os.uname().release}" in text
    assert "Memory: " in text and "Compiler: gcc" in text


def test_capability_bits_are_read_from_proc_status(entrypoint, tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapEff:\t0000000000000100\n")
    assert entrypoint.has_capability(8, str(status))
    assert not entrypoint.has_capability(7, str(status))


@pytest.mark.parametrize(
    "env, needle",
    [
        ({}, "WORKERNAME is not set"),
        ({"WORKERNAME": "w"}, "no password"),
        ({"WORKERNAME": "w", "WORKERPASS": "p", "KEEPALIVE": "x"}, "KEEPALIVE"),
    ],
)
def test_missing_settings_exit_2_with_one_line_before_anything_starts(env, needle):
    result = subprocess.run(
        [sys.executable, "-I", "-m", "fleetbake.worker.entrypoint"],
        env={"PATH": os.environ["PATH"], "FLEETBAKE_USER": "nobody", **env}, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fleetbake-worker: error: ") and needle in lines[0]


def test_settings_and_password_cross_the_pipe_intact_and_never_block(entrypoint):
    cfg = entrypoint.settings({"WORKERNAME": "w", "BUILDMASTER": "[::1]:9989", "MAXRETRIES": "none",
                               "WORKER_HOST_INFO": "h" * 2048, "WORKER_ADMIN": "A" * 200})
    payload = entrypoint.pipe_payload(cfg, b"p" * 1024)
    assert len(payload) <= entrypoint.PIPE_LIMIT <= 4096  # one atomic write into an empty pipe
    assert entrypoint.read_payload(payload) == (cfg, b"p" * 1024)
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # would raise BlockingIOError instead of blocking
    os.write(write_end, payload)
    os.close(write_end)
    os.close(read_end)


def test_a_payload_over_the_pipe_limit_is_refused(entrypoint, monkeypatch):
    monkeypatch.setattr(entrypoint, "PIPE_LIMIT", 100)
    cfg = entrypoint.settings({"WORKERNAME": "w"})
    with pytest.raises(entrypoint.ConfigError, match="fit the worker's pipe"):
        entrypoint.pipe_payload(cfg, b"p" * 90)


def test_health_is_connected_only_from_a_trusted_state_file(entrypoint, tmp_path, capsys):
    folder = tmp_path / "fleetbake"
    entrypoint.own_health_dir(str(folder))
    assert (folder.stat().st_mode & 0o777) == 0o755
    health = str(folder / "health")
    assert entrypoint.health(health) == 1  # nothing recorded yet
    entrypoint.write_health("connected 127.0.0.1:9989", health)
    assert entrypoint.health(health) == 0
    entrypoint.write_health("disconnected from 127.0.0.1:9989", health)
    assert entrypoint.health(health) == 1
    assert "worker: disconnected" in capsys.readouterr().out


def test_a_state_the_worker_stopped_repeating_is_unhealthy(entrypoint, tmp_path, capsys):
    """A build step can SIGSTOP the worker (same uid): its last "connected" must not stay healthy."""
    folder = tmp_path / "fleetbake"
    entrypoint.own_health_dir(str(folder))
    health = folder / "health"
    entrypoint.write_health("connected m:1", str(health))
    assert entrypoint.health(str(health)) == 0
    old = time.time() - entrypoint.HEALTH_STALE - 1
    os.utime(health, (old, old))
    assert entrypoint.health(str(health)) == 1
    assert "no report from the worker for" in capsys.readouterr().out
    assert entrypoint.HEARTBEAT * 3 <= entrypoint.HEALTH_STALE  # a few missed beats before it counts


def test_a_group_writable_or_foreign_health_folder_is_moved_aside(entrypoint, tmp_path):
    folder = tmp_path / "fleetbake"
    folder.mkdir()
    folder.chmod(0o777)  # anyone could have planted a state file in it
    (folder / "health").write_text("connected forged\n")
    entrypoint.own_health_dir(str(folder))
    assert (folder.stat().st_mode & 0o777) == 0o755 and not (folder / "health").exists()
    assert [p.name.split("-")[0] for p in tmp_path.iterdir() if p.name != "fleetbake"] == ["fleetbake.untrusted"]
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    entrypoint.own_health_dir(str(link))
    assert link.is_dir() and not link.is_symlink()


def test_a_failed_state_write_leaves_no_stale_state(entrypoint, tmp_path):
    folder = tmp_path / "fleetbake"
    entrypoint.own_health_dir(str(folder))
    health = folder / "health"
    entrypoint.write_health("connected m:1", str(health))
    (folder / f"health.{os.getpid()}").mkdir()  # the new state cannot be written (as with a full /tmp)
    entrypoint.write_health("disconnected from m:1", str(health))
    assert entrypoint.health(str(health)) == 1  # the old "connected" did not survive


def test_the_buildarea_is_never_taken_over(entrypoint, tmp_path):
    area = tmp_path / "area"
    area.mkdir()
    entrypoint.prepare_buildarea(str(area), ME)  # ours: fine
    nobody = pwd.getpwnam("nobody")
    with pytest.raises(entrypoint.ConfigError, match=r"belongs to uid .* never takes over .* chown -R"):
        entrypoint.prepare_buildarea(str(area), nobody)
    assert area.stat().st_uid == ME.pw_uid  # nothing was chowned
    plain = tmp_path / "plain"
    plain.write_text("x")
    with pytest.raises(entrypoint.ConfigError, match="not a directory"):
        entrypoint.prepare_buildarea(str(plain), ME)


SUPERVISED = """
import os, subprocess, sys
from fleetbake.worker import entrypoint
# Every content the health file takes, in order: the supervisor replaces it atomically (files.write_file), so
# each rename onto it is one state. A poller could miss one that lasts a moment; this journal cannot.
health, real_replace = sys.argv[2], os.replace
def replace(src, dst, *args, **kwargs):
    if os.fspath(dst) == health:
        with open(src, "rb") as new, open(health + ".journal", "ab") as journal:
            journal.write(new.read())
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
read_end, write_end = os.pipe()
child = subprocess.Popen([sys.executable, "-c", sys.argv[3]], pass_fds=(write_end,),
                         env={**os.environ, "STATUS_FD": str(write_end)})
os.close(write_end)
print("child", child.pid, flush=True)
sys.exit(entrypoint.supervise(child.pid, read_end, sys.argv[2]))
"""


def supervised(tmp_path, child_code):
    health = tmp_path / "health"
    process = subprocess.Popen([sys.executable, "-c", SUPERVISED, "", str(health), child_code], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    child = int(process.stdout.readline().split()[1])
    return process, child, health


def test_the_supervisor_records_only_known_states_and_returns_the_workers_exit_code(tmp_path):
    """No forged line is the health file's content at any moment: the journal holds every state it took. The
    worker sends a known state after the forgeries and exits once that is recorded (so all were read)."""
    health = tmp_path / "health"
    after = "disconnected from m:1 (after the forgeries)"
    code = ("import os, time; fd = int(os.environ['STATUS_FD'])\n"
            f"os.write(fd, b'connected m:1\\nFORGED connected\\nconnected-forged m:1\\n{after}\\n')\n"
            "deadline = time.monotonic() + 20\n"
            "while time.monotonic() < deadline:\n"
            "    try:\n"
            f"        if open({str(health)!r}).read() == {after + chr(10)!r}: raise SystemExit(3)\n"
            "    except FileNotFoundError: pass\n"
            "    time.sleep(0.01)\n"
            "raise SystemExit(4)  # the known state never came")
    process, _, health = supervised(tmp_path, code)
    assert process.wait(timeout=30) == 3
    assert health.read_text() == "stopped (exit 3)\n"
    journal = (tmp_path / "health.journal").read_text().splitlines()
    assert journal == ["connected m:1", after, "stopped (exit 3)"]


def test_a_stopped_supervisor_stops_the_worker_and_dies_by_the_same_signal(tmp_path):
    """So tini's -e 143 maps docker stop to 0, and systemd sees a stop, not a worker that gave up (exit 0)."""
    code = ("import os, signal, time; fd = int(os.environ['STATUS_FD'])\n"
            "signal.signal(signal.SIGTERM, lambda *a: os._exit(0))  # twistd stops cleanly on SIGTERM\n"
            "os.write(fd, b'connected m:1\\n'); time.sleep(60)")
    process, child, health = supervised(tmp_path, code)
    deadline = time.monotonic() + 10
    while not (health.exists() and health.read_text().startswith("connected")):
        assert time.monotonic() < deadline, "no state recorded"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == -signal.SIGTERM
    assert health.read_text() == "stopped (exit 0)\n"
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


# --- ccache: on only with a mounted volume, decided before the privilege drop ---------------------


def ccache_env(tmp_path):
    """An image's environment whose cache directory (a folder of this user's) is, per the fake mountinfo, mounted."""
    from fleetbake.worker import ccache

    cache, wrappers = tmp_path / "ccache", tmp_path / "wrappers"
    cache.mkdir()
    wrappers.mkdir()
    info = tmp_path / "mountinfo"
    info.write_text(f"21 1 0:20 / / rw - overlay overlay rw\n30 21 8:1 /v {cache} rw,relatime - ext4 /dev/sda1 rw\n")
    return {"PATH": "/usr/bin:/bin", ccache.WRAPPERS_VAR: str(wrappers), ccache.DIR_VAR: str(cache)}, str(info)


def test_builds_get_ccache_only_when_the_entrypoint_turned_it_on(entrypoint, tmp_path, monkeypatch):
    from fleetbake.worker import ccache, mounts

    env, info = ccache_env(tmp_path)
    monkeypatch.setattr(mounts, "MOUNTINFO", info)
    on = entrypoint.ccache_decision(env, ME)
    assert on.enabled
    builds = entrypoint.worker_environment(env, ME, on)
    assert builds["PATH"] == f"{tmp_path}/wrappers:/usr/bin:/bin" and builds["CCACHE_DIR"] == f"{tmp_path}/ccache"
    assert builds["CCACHE_TEMPDIR"] == f"{tmp_path}/ccache/tmp"
    # The bound is in the builds' environment, which outranks a ccache.conf a build step writes (ccache -M 0).
    assert builds["CCACHE_MAXSIZE"] == "5G"
    assert "Compiler cache: " in entrypoint.host_info("img", "4.3.0", builds)
    unmounted = {**env, ccache.DIR_VAR: str(tmp_path)}
    off = entrypoint.ccache_decision(unmounted, ME)
    assert not off.enabled
    assert entrypoint.worker_environment(unmounted, ME, off) == entrypoint.worker_environment(unmounted, ME)
    assert "Compiler cache" not in entrypoint.host_info("img", "4.3.0", entrypoint.worker_environment(unmounted, ME))


def test_the_worker_logs_one_line_about_ccache(entrypoint, capsys):
    from fleetbake.worker import ccache

    entrypoint.log_ccache(ccache.Decision(False, "/ccache", "/ccache is not a mounted volume (...)"))
    entrypoint.log_ccache(ccache.Decision(True, "/ccache", "/ccache (a mounted volume, CCACHE_MAXSIZE=5G); ..."))
    entrypoint.log_ccache(ccache.Decision(False, "/ccache", "/ccache is mounted read-only", warning=True))
    assert capsys.readouterr().err.splitlines() == [
        "fleetbake-worker: ccache off: /ccache is not a mounted volume (...)",
        "fleetbake-worker: ccache on: /ccache (a mounted volume, CCACHE_MAXSIZE=5G); ...",
        "fleetbake-worker: warning: ccache off: /ccache is mounted read-only",
    ]


@pytest.mark.parametrize("env, needle", [
    ({"CCACHE_MAXSIZE": "0"}, "CCACHE_MAXSIZE='0': 0 means no limit"),
    ({"WORKER_CCACHE_DIR": "relative"}, "WORKER_CCACHE_DIR='relative'"),
])
def test_a_bad_ccache_setting_stops_the_worker_before_anything_starts(entrypoint, monkeypatch, env, needle):
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("started despite a bad setting"))
    monkeypatch.setattr(entrypoint, "read_password", lambda *a: pytest.fail("read the password despite a bad setting"))
    with pytest.raises(entrypoint.ConfigError, match=needle):
        entrypoint.start_worker({"WORKERNAME": "w", "WORKERPASS": "p", **env})
    with pytest.raises(entrypoint.ConfigError, match=needle):
        entrypoint.ccache_decision(env, ME)


def test_hostinfo_says_whether_builds_cache_their_compiles(entrypoint, tmp_path, monkeypatch, capsys):
    from fleetbake.worker import mounts

    env, info = ccache_env(tmp_path)
    monkeypatch.setattr(mounts, "MOUNTINFO", info)
    monkeypatch.setattr(entrypoint, "build_user", lambda env: ME)
    monkeypatch.setattr(os, "environ", env)
    assert entrypoint.main(["hostinfo"]) == 0
    assert "Compiler cache: " in capsys.readouterr().out
    monkeypatch.setattr(mounts, "MOUNTINFO", str(tmp_path / "nothing-mounted"))
    assert entrypoint.main(["hostinfo"]) == 0
    assert "Compiler cache" not in capsys.readouterr().out
