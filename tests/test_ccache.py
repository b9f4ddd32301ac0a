"""fleetbake.worker.ccache (on only with a mounted volume) and configure-ccache.sh, without Docker."""

import json
import os
import pwd
import shutil
import stat
import subprocess

import pytest

from conftest import ROOT
from fleetbake.worker import ccache, mounts

ME = pwd.getpwuid(os.getuid())
SCRIPT = ROOT / "images" / "common" / "scripts" / "configure-ccache.sh"
# `ccache --print-stats` of Debian 12's ccache 4.7.5 after a warm rebuild (two compiles, both direct hits).
PRINT_STATS = """\
autoconf_test\t0
bad_compiler_arguments\t0
cache_miss\t1
cache_size_kibibyte\t16
called_for_link\t3
direct_cache_hit\t2
direct_cache_miss\t1
files_in_cache\t4
local_storage_hit\t2
preprocessed_cache_hit\t1
preprocessed_cache_miss\t1
stats_updated_timestamp\t1795873713
stats_zeroed_timestamp\t1795873712
"""


def mountinfo(tmp_path, *points, read_only=()):
    """A /proc/self/mountinfo listing `points` (and the root), as the kernel writes it."""
    lines = ["21 1 0:20 / / rw,relatime - overlay overlay rw"]
    for index, point in enumerate(points, start=30):
        escaped = str(point).replace("\\", "\\134").replace(" ", "\\040")
        options = "ro,relatime" if point in read_only else "rw,relatime"
        lines.append(f"{index} 21 8:1 /var/lib/docker/volumes/v/_data {escaped} {options} - ext4 /dev/sda1 rw")
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def volume(tmp_path):
    """A cache directory owned by this user, and an image's wrapper directory."""
    cache, wrappers = tmp_path / "ccache", tmp_path / "wrappers"
    cache.mkdir(mode=0o750)
    wrappers.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", ccache.WRAPPERS_VAR: str(wrappers), ccache.DIR_VAR: str(cache)}
    return cache, wrappers, env


def test_a_mounted_volume_the_build_user_owns_turns_ccache_on(tmp_path, volume):
    cache, wrappers, env = volume
    decision = ccache.decide(env, ME.pw_uid, ME.pw_name, mountinfo(tmp_path, cache))
    assert decision.enabled and not decision.warning
    assert decision.env == {"PATH": f"{wrappers}:/usr/local/bin:/usr/bin:/bin", "CCACHE_DIR": str(cache),
                            "CCACHE_TEMPDIR": f"{cache}/tmp", "CCACHE_MAXSIZE": "5G"}
    assert decision.line() == f"ccache on: {cache} (a mounted volume, CCACHE_MAXSIZE=5G); compilers through {wrappers}"
    builds = ccache.apply(env, decision)
    assert builds["PATH"].split(":")[0] == str(wrappers) and builds["CCACHE_DIR"] == str(cache)
    # Already on the PATH (an owner's own -e PATH=...): moved first, never twice.
    again = ccache.decide({**env, "PATH": f"/usr/bin:{wrappers}/"}, ME.pw_uid, "", mountinfo(tmp_path, cache))
    assert again.env["PATH"] == f"{wrappers}:/usr/bin"
    assert ccache.describe(builds) == f"{cache} (max 5G)"
    assert ccache.describe(env) is None


def test_without_a_mounted_volume_nothing_changes(tmp_path, volume):
    cache, _, env = volume
    del env[ccache.DIR_VAR]
    decision = ccache.decide(env, ME.pw_uid, ME.pw_name, mountinfo(tmp_path, tmp_path / "elsewhere"))
    assert not decision.enabled and not decision.warning and decision.env == {}
    assert decision.line() == ("ccache off: /ccache is not a mounted volume (mount one to cache compiles: "
                               "-v cpython-ccache:/ccache)")
    assert ccache.apply(env, decision) == env
    # A folder that exists but is the image's own (not a mount) is off too.
    named = ccache.decide({**env, ccache.DIR_VAR: str(cache)}, ME.pw_uid, ME.pw_name, mountinfo(tmp_path))
    assert not named.enabled and named.warning  # the owner named it: say so as a warning
    assert f"{cache} is not a mounted volume" in named.reason


def test_a_mounted_volume_the_build_user_cannot_write_leaves_ccache_off_with_a_warning(tmp_path, volume):
    cache, _, env = volume
    other = ME.pw_uid + 1  # the build user is someone else than the volume's owner
    decision = ccache.decide(env, other, "buildbot", mountinfo(tmp_path, cache))
    assert not decision.enabled and decision.warning and decision.env == {}
    assert f"{cache} is mounted but belongs to uid {ME.pw_uid}" in decision.reason
    assert f"not to the build user buildbot (uid {other})" in decision.reason and f"chown -R {other}" in decision.reason
    cache.chmod(0o550)  # the owner's, without its write bit
    try:
        unwritable = ccache.decide(env, ME.pw_uid, "", mountinfo(tmp_path, cache))
    finally:
        cache.chmod(0o750)
    assert not unwritable.enabled and unwritable.warning
    assert unwritable.reason == f"{cache} is mounted but its owner, the build user uid {ME.pw_uid}, may not write it (mode 550)"
    read_only = ccache.decide(env, ME.pw_uid, "", mountinfo(tmp_path, cache, read_only=(cache,)))
    assert not read_only.enabled and read_only.warning and read_only.reason == f"{cache} is mounted read-only"


def test_a_mounted_volume_on_an_image_without_wrappers_leaves_ccache_off(tmp_path, volume):
    cache, _, env = volume
    for wrappers in ("", str(tmp_path / "missing")):
        decision = ccache.decide({**env, ccache.WRAPPERS_VAR: wrappers}, ME.pw_uid, "", mountinfo(tmp_path, cache))
        assert not decision.enabled and decision.warning and "no compiler wrappers" in decision.reason


@pytest.mark.parametrize("value, shown", [("", "5G"), ("10G", "10G"), ("500M", "500M"), ("1.5G", "1.5G"),
                                          ("20", "20"), ("10Gi", "10Gi")])
def test_the_size_is_what_ccache_reads(value, shown):
    assert ccache.max_size({ccache.MAX_SIZE_VAR: value}) == shown


@pytest.mark.parametrize("env, message", [
    ({ccache.MAX_SIZE_VAR: "0"}, "0 means no limit; the cache must be bounded"),
    ({ccache.MAX_SIZE_VAR: "0.0G"}, "0 means no limit"),
    ({ccache.MAX_SIZE_VAR: "lots"}, "is not a size ccache reads"),
    ({ccache.MAX_SIZE_VAR: "10g"}, "is not a size ccache reads"),  # ccache 4.7.5: invalid size
    ({ccache.DIR_VAR: "ccache"}, "an absolute, normalized path"),
    ({ccache.DIR_VAR: "/ccache/../etc"}, "an absolute, normalized path"),
    ({ccache.DIR_VAR: "/"}, "an absolute, normalized path"),
    ({ccache.DIR_VAR: "/cache dir"}, "an absolute, normalized path"),
])
def test_bad_settings_are_one_line_errors(env, message):
    with pytest.raises(ccache.SettingError, match=message):
        ccache.settings(env)
    with pytest.raises(ccache.SettingError):
        ccache.decide(env, ME.pw_uid)


def test_mountinfo_paths_are_unescaped_and_read_only_is_read(tmp_path):
    spaced = tmp_path / "a dir"
    table = mounts.table(mountinfo(tmp_path, spaced, tmp_path / "ro", read_only=(tmp_path / "ro",)))
    assert table == {"/": False, str(spaced): False, str(tmp_path / "ro"): True}
    assert mounts.table(str(tmp_path / "absent")) == {}
    assert "/" in mounts.table()  # this process's own


def test_print_stats_become_hits_and_misses():
    stats = ccache.parse_stats(PRINT_STATS)
    assert (stats["hits"], stats["misses"], stats["hit_rate"]) == (3, 1, 0.75)
    assert (stats["direct_hits"], stats["preprocessed_hits"], stats["cache_size_kib"]) == (2, 1, 16)
    assert stats["counters"]["called_for_link"] == 3
    assert "autoconf_test" not in stats["counters"] and "stats_zeroed_timestamp" not in stats["counters"]
    assert ccache.parse_stats("ccache: invalid option -- 'print-stats'\n") == {}
    assert ccache.parse_stats("cache_miss\t0\n")["hit_rate"] is None


def test_the_env_command_prints_the_decision_as_one_json_line(tmp_path, volume, monkeypatch, capsys):
    cache, wrappers, env = volume
    monkeypatch.setattr(os, "environ", {**env, "USER": ME.pw_name})
    monkeypatch.setattr(mounts, "MOUNTINFO", mountinfo(tmp_path, cache))
    assert ccache.main(["env"]) == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["enabled"] is True and decision["env"]["CCACHE_DIR"] == str(cache)
    assert decision["env"]["PATH"].startswith(f"{wrappers}:")
    monkeypatch.setattr(os, "environ", {**env, ccache.MAX_SIZE_VAR: "0"})
    assert ccache.main(["env"]) == 2
    assert "CCACHE_MAXSIZE" in capsys.readouterr().err
    assert ccache.main([]) == 2


# --- configure-ccache.sh ---------------------------------------------------------------------


@pytest.fixture
def provision(tmp_path):
    """configure-ccache.sh's inputs in a scratch folder: compilers, a ccache, an old wrapper, the paths it writes."""
    bindir, tools, wrappers = tmp_path / "bin", tmp_path / "tools", tmp_path / "wrappers"
    for folder in (bindir, tools, wrappers):
        folder.mkdir()
    for compiler in ("cc", "gcc", "g++", "clang"):
        (bindir / compiler).write_text("#!/bin/sh\n")
        (bindir / compiler).chmod(0o755)
    fake = tools / "ccache"
    fake.write_text("#!/bin/sh\necho 'ccache version 4.7.5'\n")
    fake.chmod(0o755)
    (wrappers / "gcc").symlink_to(fake)  # the package's own, kept
    env = {"PATH": f"{tools}:/usr/bin:/bin", "WORKER_USER": ME.pw_name, "WRAPPER_DIR": str(wrappers),
           "CACHE_DIR": str(tmp_path / "ccache"), "MAX_SIZE": "5G", "CCACHE_CONF": str(tmp_path / "ccache.conf"),
           "COMPILER_DIR": str(bindir), "PROFILE_DIR": str(tmp_path / "profile.d")}
    (tmp_path / "profile.d").mkdir()
    (tmp_path / "profile.d" / "ccache.sh").write_text('PATH="/usr/lib64/ccache:$PATH"\n')  # Fedora's
    return tmp_path, env


def run_script(env):
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False)


def test_the_script_wraps_every_compiler_and_keeps_everything_under_the_volume(provision):
    tmp_path, env = provision
    result = run_script(env)
    assert result.returncode == 0, result.stderr
    wrappers = tmp_path / "wrappers"
    assert sorted(p.name for p in wrappers.iterdir()) == ["cc", "clang", "g++", "gcc"]  # no c++/clang++ here
    assert {os.path.realpath(p) for p in wrappers.iterdir()} == {str(tmp_path / "tools" / "ccache")}
    conf = (tmp_path / "ccache.conf").read_text()
    settings = dict(line.split(" = ", 1) for line in conf.splitlines() if line and not line.startswith("#"))
    cache = str(tmp_path / "ccache")
    assert settings == {"cache_dir": cache, "temporary_dir": f"{cache}/tmp", "max_size": "5G",
                        "sloppiness": "time_macros,include_file_mtime,include_file_ctime",
                        "compiler_check": "content", "base_dir": "/buildarea"}
    info = os.stat(cache)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (ME.pw_uid, 0o750)
    assert not (tmp_path / "profile.d" / "ccache.sh").exists()  # the entrypoint decides, not a login shell
    assert result.stdout.strip().endswith(f"wrappers for cc gcc g++ clang in {wrappers}; {tmp_path}/ccache.conf; "
                                          f"{cache} for {ME.pw_name}")


def test_the_script_fails_without_ccache_gcc_or_with_a_wrapper_that_is_not_ccache(provision):
    tmp_path, env = provision
    (tmp_path / "empty").mkdir()
    result = run_script({**env, "PATH": str(tmp_path / "empty")})  # ccache is looked for before anything is written
    assert result.returncode == 1 and "configure-ccache: ccache is not installed" in result.stderr
    (tmp_path / "bin" / "gcc").unlink()
    result = run_script(env)  # a compiler, but not gcc: configure would find an unwrapped one
    assert result.returncode == 1 and f"no {tmp_path}/bin/gcc to put ccache in front of" in result.stderr
    (tmp_path / "bin" / "gcc").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "gcc").chmod(0o755)
    (tmp_path / "wrappers" / "cc").unlink()  # made by the run before
    (tmp_path / "wrappers" / "cc").symlink_to("/bin/true")
    result = run_script(env)
    assert result.returncode == 1 and "wrappers/cc is not ccache" in result.stderr
    assert not (tmp_path / "ccache.conf").exists()


def test_an_image_with_no_compiler_gets_no_wrapper_and_still_builds(provision):
    """A row that builds no CPython (the build tests' one-package rows) has no compiler to wrap: not an error."""
    tmp_path, env = provision
    for compiler in ("cc", "gcc", "g++", "clang"):
        (tmp_path / "bin" / compiler).unlink()
    result = run_script(env)
    assert result.returncode == 0, result.stderr
    assert f"no compiler in {tmp_path}/bin (cc, gcc, clang): no wrapper to make" in result.stdout
    assert "wrappers for no compiler in " in result.stdout and (tmp_path / "ccache.conf").is_file()


def test_ccache_itself_reads_the_configuration(provision):
    """The real ccache accepts every line of the configuration (a misspelt key is an error there)."""
    assert shutil.which("ccache"), "ccache: scripts/setup.sh installs it (and ci.yml's unit-test job)"
    tmp_path, env = provision
    assert run_script(env).returncode == 0
    shown = subprocess.run(["ccache", "--show-config"], capture_output=True, text=True, timeout=30, check=True,
                           env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                                "CCACHE_CONFIGPATH2": str(tmp_path / "ccache.conf")}).stdout
    from_file = [line for line in shown.splitlines() if line.startswith(f"({tmp_path}/ccache.conf)")]
    assert len(from_file) == 6, shown
    assert f"cache_dir = {tmp_path}/ccache" in shown and f"temporary_dir = {tmp_path}/ccache/tmp" in shown
    assert "compiler_check = content" in shown and "max_size = 5.0G" in shown
