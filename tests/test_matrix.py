import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import MINIMAL, ROOT
from fleetbake.pipeline import matrix


def test_the_live_matrix_loads_with_the_rows_and_packages_the_fleet_needs(live_project):
    m = live_project
    assert {"debian-12", "debian-13", "ubuntu-24.04", "fedora-44", "fedora-45", "windows-2022"} <= set(m.rows)
    for row in (m.rows["debian-12"], m.rows["debian-13"]):
        assert {"pydebug", "release", "nogil", "installed", "clang", "asan"} <= set(row.configurations)
        assert row.spec.worker_version.startswith("4.3.")
        for needed in ("gdb", "lcov", "pkg-config", "tk-dev", "uuid-dev", "libzstd-dev", "xvfb", "clang"):
            assert needed in row.all_packages
    assert "libmpdec-dev" in m.rows["debian-13"].all_packages
    assert "libmpdec-dev" not in m.rows["debian-12"].all_packages  # bookworm has none
    assert "mpdecimal-devel" in m.rows["fedora-45"].all_packages  # the YAML merge key carried it over
    assert m.rows["windows-2022"].spec.runner == "windows-2022"
    asan = m.rows["debian-12"].configurations["asan"]
    assert asan.env["ASAN_OPTIONS"] == "detect_leaks=0:allocator_may_return_null=1:handle_segv=0"
    assert asan.smoke  # inherits the top-level smoke list
    for row in m.rows.values():  # ubuntu:24.04 ships `ubuntu` with uid 1000: create-user.sh would fail on it
        assert (row.spec.user, row.spec.uid) == ("buildbot", 1001 if row.spec.base.startswith("ubuntu:") else 1000)


def test_merge_keys_and_the_top_level_smoke_list_are_inherited(project):
    fedora_44, fedora_45 = project.rows["fedora-44"], project.rows["fedora-45"]
    assert fedora_45.all_packages == fedora_44.all_packages and "mpdecimal-devel" in fedora_45.all_packages  # `<<: *fedora`
    assert (fedora_44.spec.base, fedora_45.spec.base) == ("registry.fedoraproject.org/fedora:44", "registry.fedoraproject.org/fedora:45")
    for config in project.rows["debian-12"].configurations.values():  # none names its own smoke list
        assert config.smoke == ["test_ssl", "test_tkinter", "test_sqlite3", "test_sys"]
    assert project.rows["debian-13"].all_packages[-2:] == ["libmpdec-dev", "libclang-rt-19-dev"]  # extra_packages last


def test_json_lists_rows_for_ci(project):
    rows = json.loads(project.to_json())
    assert [r["os"] for r in rows] == ["debian-12", "debian-13", "ubuntu-24.04", "fedora-44", "fedora-45", "windows-2022"]
    assert rows[0] == {"os": "debian-12", "family": "debian", "base": "debian:12", "worker_version": "4.3.0",
                       "runner": "ubuntu-24.04", "configurations": ["pydebug", "nogil", "installed", "clang"],
                       "arches": ["amd64", "arm64"],
                       "arch_runners": {"amd64": "ubuntu-24.04", "arm64": "ubuntu-24.04-arm"}}
    assert rows[-1]["runner"] == "windows-2022" and rows[-1]["family"] == "windows"
    assert "\n" not in project.to_json()  # CI writes it straight into $GITHUB_OUTPUT


def _error(write_matrix, text):
    path = write_matrix(text)
    with pytest.raises(matrix.MatrixError) as info:
        matrix.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:")
    return info.value


@pytest.mark.parametrize(
    "old, new, line, field, reason",
    [
        ("packages: [build-essential]", "packages: [build-essential, 'gcc; rm -rf /']", 9, "rows.debian-12.packages[1]", "not a safe package name"),
        ("packages: [build-essential]", 'packages: ["bad\\nname"]', 9, "rows.debian-12.packages[0]", "not a safe package name"),
        ("configure: [--with-pydebug]", "configure: ['--with-pydebug $(id)']", 4, "configurations.pydebug.configure[0]", "not a safe configure flag"),
        ("configure: [--with-pydebug]", "configure: ['--x`whoami`']", 4, "configurations.pydebug.configure[0]", "not a safe configure flag"),
        ("    base: debian:12\n", "", 6, "rows.debian-12.base", "required field is missing"),
        ("family: debian", "family: gentoo", 7, "rows.debian-12.family", "Input should be 'debian'"),
        ("configurations: [pydebug]", "configurations: pydebug", 10, "rows.debian-12.configurations", "valid list"),
        ("packages: [build-essential]", "packages: [build-essential]\n    uid: '1000'", 10, "rows.debian-12.uid", "valid integer"),
        ("configurations: [pydebug]", "configurations: [pydebug, turbo]", 10, "rows.debian-12.configurations[1]", "unknown configuration 'turbo'"),
        ("family: debian", "family: debian\n    colour: blue", 8, "rows.debian-12.colour", "unknown field"),
    ],
)
def test_bad_input_names_file_line_field_and_reason(write_matrix, old, new, line, field, reason):
    assert old in MINIMAL
    error = _error(write_matrix, MINIMAL.replace(old, new))
    assert (error.line, error.field) == (line, field), str(error)
    assert reason in error.reason


def test_duplicate_rows_are_rejected_with_both_lines(write_matrix):
    text = MINIMAL + "  debian-12:\n    family: debian\n"
    error = _error(write_matrix, text)
    assert error.field == "rows"
    assert error.line == 11
    assert "duplicate key 'debian-12' (first on line 6)" in error.reason


def test_malformed_yaml_reports_its_line(write_matrix):
    error = _error(write_matrix, MINIMAL.replace("packages: [build-essential]", "packages: [build-essential"))
    assert error.line is not None and error.line >= 9
    assert "malformed YAML" in error.reason


def test_unknown_row_and_configuration_on_the_command_line(write_matrix):
    m = matrix.load(write_matrix(MINIMAL))
    with pytest.raises(matrix.MatrixError, match="--os: unknown row 'debian-99' \\(known: debian-12\\)"):
        m.select("debian-99")
    with pytest.raises(matrix.MatrixError, match="--config: row debian-12 has no configuration 'asan'"):
        m.configurations(m.rows["debian-12"], "asan")
    assert [r.name for r in m.select("all")] == ["debian-12"]


def test_missing_file_and_empty_file(tmp_path, write_matrix):
    with pytest.raises(matrix.MatrixError, match="cannot read"):
        matrix.load(tmp_path / "nope.yml")
    with pytest.raises(matrix.MatrixError, match="file is empty"):
        matrix.load(write_matrix(""))


def test_cli_gives_one_line_and_non_zero_exit_without_traceback(write_matrix):
    bad = write_matrix(MINIMAL.replace("[build-essential]", "['a|b']"))
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "matrix", "--matrix", str(bad)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {bad}:9: rows.debian-12.packages[0]: 'a|b' is not a safe package name")


# --- what a value may mean (section 1 of "Prove what the README promises") ---


def _row(extra):
    """MINIMAL with `extra` added to the row (from line 11 on)."""
    return MINIMAL.replace("    configurations: [pydebug]\n", "    configurations: [pydebug]\n" + textwrap.indent(extra, "    ") + "\n")


def _config(extra):
    """MINIMAL with `extra` added to the pydebug configuration (from line 5 on)."""
    return MINIMAL.replace("    configure: [--with-pydebug]\n", "    configure: [--with-pydebug]\n" + textwrap.indent(extra, "    ") + "\n")


WINDOWS = MINIMAL.replace("family: debian", "family: windows\n    runner: windows-2022")
WINDOWS_OK = WINDOWS.replace("    configure: [--with-pydebug]\n", "    configure: [--with-pydebug]\n    windows: {build: [], test: []}\n")


def _flags(flags):
    return MINIMAL.replace("[--with-pydebug]", f"[{flags}]")


REFUSED = {
    # user: a dedicated, unprivileged account
    "user root": (_row("user: root"), 11, "rows.debian-12.user", "system account"),
    "user daemon": (_row("user: daemon"), 11, "rows.debian-12.user", "dedicated, unprivileged account"),
    "user nobody": (_row("user: nobody"), 11, "rows.debian-12.user", "system account"),
    "user ubuntu": (_row("user: ubuntu"), 11, "rows.debian-12.user", "system account"),
    "user systemd-*": (_row("user: systemd-network"), 11, "rows.debian-12.user", "system account"),
    "user _apt": (_row("user: _apt"), 11, "rows.debian-12.user", "system account"),
    "user sudo group": (_row("user: sudo"), 11, "rows.debian-12.user", "system account"),
    "user all digits": (_row("user: '1000'"), 11, "rows.debian-12.user", "all digits"),
    "user dot": (_row("user: build.bot"), 11, "rows.debian-12.user", "not a portable user name"),
    "user leading dash": (_row("user: -bot"), 11, "rows.debian-12.user", "not a portable user name"),
    "user leading digit": (_row("user: 1bot"), 11, "rows.debian-12.user", "not a portable user name"),
    "user upper case": (_row("user: Buildbot"), 11, "rows.debian-12.user", "not a portable user name"),
    "user too long": (_row("user: " + "b" * 33), 11, "rows.debian-12.user", "not a portable user name"),
    # smoke: never empty (python -m test alone runs the whole suite), only test names, no repeats
    "smoke empty in a configuration": (_config("smoke: []"), 5, "configurations.pydebug.smoke", "runs the whole test suite"),
    "smoke empty at the top": (MINIMAL.replace("smoke: [test_sys]", "smoke: []"), 1, "smoke", "runs the whole test suite"),
    "smoke repeated": (MINIMAL.replace("[test_sys]", "[test_sys, test_os, test.test_sys]"), 1, "smoke[2]", "listed twice"),
    "smoke option": (_config("smoke: [test_os, --fromfile]"), 5, "configurations.pydebug.smoke[1]", "not a regrtest test name"),
    "smoke not a test": (MINIMAL.replace("[test_sys]", "[sys]"), 1, "smoke[0]", "not a regrtest test name"),
    # configure: feature options and configure variables, nothing that moves the tree or skips configuring
    "configure --prefix": (_flags("--prefix=/tmp/x"), 4, "configurations.pydebug.configure[0]", "verify sets --prefix itself"),
    "configure --pre (abbreviated)": (_flags("--with-pydebug, --pre=/x"), 4, "configurations.pydebug.configure[1]", "verify sets --prefix itself"),
    "configure --exec-prefix": (_flags("--exec-prefix=/x"), 4, "configurations.pydebug.configure[0]", "verify sets --prefix itself"),
    "configure --libdir": (_flags("--libdir=/x"), 4, "configurations.pydebug.configure[0]", "verify sets --prefix itself"),
    "configure --srcdir": (_flags("--srcdir=/x"), 4, "configurations.pydebug.configure[0]", "verify sets --prefix itself"),
    "configure --enable-framework": (_flags("--enable-framework=/x"), 4, "configurations.pydebug.configure[0]", "verify sets --prefix itself"),
    "configure --help": (_flags("--help"), 4, "configurations.pydebug.configure[0]", "prints its help and exits"),
    "configure --version": (_flags("--version"), 4, "configurations.pydebug.configure[0]", "prints its version"),
    "configure --no-create": (_flags("--no-create"), 4, "configurations.pydebug.configure[0]", "stops before writing the Makefile"),
    "configure --cache-file": (_flags("--cache-file=/tmp/c"), 4, "configurations.pydebug.configure[0]", "cache file"),
    "configure -n": (_flags("-n"), 4, "configurations.pydebug.configure[0]", "not a configure feature option"),
    "configure -prefix (one dash)": (_flags("-prefix=/x"), 4, "configurations.pydebug.configure[0]", "not a configure feature option"),
    "configure bare word": (_flags("pydebug"), 4, "configurations.pydebug.configure[0]", "not a configure feature option"),
    "configure CONFIG_SITE": (_flags("CONFIG_SITE=/tmp/x"), 4, "configurations.pydebug.configure[0]", "not a configure variable"),
    "configure HOSTRUNNER": (_flags("HOSTRUNNER=true"), 4, "configurations.pydebug.configure[0]", "not a configure variable"),
    "configure twice": (_flags("--with-pydebug, CC=gcc, --without-pydebug"), 4, "configurations.pydebug.configure[2]", "configure keeps the last"),
    "configure variable twice": (_flags("CC=gcc, CC=clang"), 4, "configurations.pydebug.configure[1]", "configure keeps the last"),
    # env: nothing that swaps what is tested or how the sandbox behaves
    "env LD_PRELOAD": (_config("env: {LD_PRELOAD: /tmp/x.so}"), 5, "configurations.pydebug.env.LD_PRELOAD", "loads other code"),
    "env LD_LIBRARY_PATH": (_config("env: {LD_LIBRARY_PATH: /tmp}"), 5, "configurations.pydebug.env.LD_LIBRARY_PATH", "loads other code"),
    "env GCONV_PATH": (_config("env: {GCONV_PATH: /tmp}"), 5, "configurations.pydebug.env.GCONV_PATH", "loads other code"),
    "env PYTHONPATH": (_config("env: {PYTHONPATH: /tmp/lib}"), 5, "configurations.pydebug.env.PYTHONPATH", "standard library or tests"),
    "env PYTHONHOME": (_config("env: {PYTHONHOME: /tmp}"), 5, "configurations.pydebug.env.PYTHONHOME", "standard library or tests"),
    "env PATH": (_config("env: {PATH: /tmp}"), 5, "configurations.pydebug.env.PATH", "which commands"),
    "env BASH_ENV": (_config("env: {BASH_ENV: /tmp/x}"), 5, "configurations.pydebug.env.BASH_ENV", "which commands"),
    "env IFS": (_config("env: {IFS: x}"), 5, "configurations.pydebug.env.IFS", "which commands"),
    "env MAKEFLAGS": (_config("env: {MAKEFLAGS: n}"), 5, "configurations.pydebug.env.MAKEFLAGS", "which commands"),
    "env HOME": (_config("env: {HOME: /tmp}"), 5, "configurations.pydebug.env.HOME", "sandbox sets it"),
    "env TMPDIR": (_config("env: {TMPDIR: /buildarea}"), 5, "configurations.pydebug.env.TMPDIR", "sandbox sets it"),
    "env USER": (_config("env: {USER: root}"), 5, "configurations.pydebug.env.USER", "sandbox sets it"),
    "env TERM": (_config("env: {TERM: dumb}"), 5, "configurations.pydebug.env.TERM", "curses and tkinter"),
    "env DISPLAY": (_config("env: {DISPLAY: ':0'}"), 5, "configurations.pydebug.env.DISPLAY", "curses and tkinter"),
    "env BUILDBOT": (_config("env: {BUILDBOT: '0'}"), 5, "configurations.pydebug.env.BUILDBOT", "reserved"),
    "env WORKER_NAME": (_config("env: {WORKER_NAME: x}"), 5, "configurations.pydebug.env.WORKER_NAME", "reserved"),
    "env FLEETBAKE_USER": (_config("env: {FLEETBAKE_USER: root}"), 5, "configurations.pydebug.env.FLEETBAKE_USER", "reserved"),
    # packages: nothing that lets the build user become root
    "package sudo": (MINIMAL.replace("[build-essential]", "[build-essential, sudo]"), 9, "rows.debian-12.packages[1]", "become root"),
    "package sudo pinned": (MINIMAL.replace("[build-essential]", "[sudo=1.9.13p3-1]"), 9, "rows.debian-12.packages[0]", "become root"),
    "package doas": (_row("extra_packages: [opendoas]"), 11, "rows.debian-12.extra_packages[0]", "become root"),
    "package polkit": (_row("extra_packages: [policykit-1]"), 11, "rows.debian-12.extra_packages[0]", "become root"),
    "package pkexec": (_row("extra_packages: [pkexec]"), 11, "rows.debian-12.extra_packages[0]", "become root"),
    "package removal": (MINIMAL.replace("[build-essential]", "[build-essential, tini-]"), 9, "rows.debian-12.packages[1]", "remove this package"),
    # bootstrap: a Debian-family root file system, tagged with what it is
    "bootstrap on fedora": (MINIMAL.replace("family: debian", "family: fedora").replace("    configurations: [pydebug]\n", "    configurations: [pydebug]\n    bootstrap: {suite: bookworm, mirror: http://deb.debian.org/debian}\n"),
                            11, "rows.debian-12.bootstrap", "debian family only"),
    "bootstrap trixie as debian:12": (_row("bootstrap: {suite: trixie, mirror: http://deb.debian.org/debian}"), 11, "rows.debian-12.bootstrap.suite", "not what debian:12 says (bookworm)"),
    "bootstrap bookworm as repo/debian:13": (MINIMAL.replace("base: debian:12", "base: fleetbake-test/debian:13") + "    bootstrap: {suite: bookworm, mirror: http://deb.debian.org/debian}\n",
                                             11, "rows.debian-12.bootstrap.suite", "(trixie)"),
    "bootstrap unknown release": (MINIMAL.replace("base: debian:12", "base: debian:15") + "    bootstrap: {suite: duke, mirror: http://deb.debian.org/debian}\n",
                                  8, "rows.debian-12.base", "unknown debian release 15"),
    "bootstrap under another name": (MINIMAL.replace("base: debian:12", "base: site/worker-base:12") + "    bootstrap: {suite: bookworm, mirror: http://deb.debian.org/debian}\n",
                                     8, "rows.debian-12.base", "named debian:TAG"),
    "bootstrap without a tag": (MINIMAL.replace("base: debian:12", "base: debian") + "    bootstrap: {suite: bookworm, mirror: http://deb.debian.org/debian}\n",
                                8, "rows.debian-12.base", "named debian:TAG"),
    "bootstrap a Debian suite as ubuntu": (MINIMAL.replace("base: debian:12", "base: ubuntu:bookworm") + "    bootstrap: {suite: bookworm, mirror: http://deb.debian.org/debian}\n",
                                           11, "rows.debian-12.bootstrap.suite", "not a ubuntu suite"),
    "bootstrap a pinned digest": (MINIMAL.replace("base: debian:12", "base: debian:12@sha256:" + "0" * 64) + "    bootstrap: {suite: bookworm, mirror: http://deb.debian.org/debian}\n",
                                  11, "rows.debian-12.bootstrap", "cannot have the digest"),
    # runner: where the family's images can be built
    "runner for windows": (MINIMAL.replace("family: debian", "family: windows"), 6, "rows.debian-12.runner", "builds on windows-2022"),
    "runner for debian": (_row("runner: windows-2022"), 11, "rows.debian-12.runner", "builds on ubuntu-24.04"),
    # windows: the fleet's Windows builder flags, which must build and test the same interpreter
    "windows row without windows flags": (WINDOWS, 11, "rows.debian-12.configurations[0]", "no `windows` flags"),
    "windows build -E": (_config("windows: {build: [-E], test: []}"), 5, "configurations.pydebug.windows.build[0]", "not a build.bat option"),
    "windows --pgo": (_config("windows: {build: [--pgo], test: [+d]}"), 5, "configurations.pydebug.windows.build[0]", "not a build.bat option"),
    "windows --no-ssl": (_config("windows: {build: [--no-ssl], test: []}"), 5, "configurations.pydebug.windows.build[0]", "not a build.bat option"),
    "windows -c PGInstrument": (_config("windows: {build: [-c, PGInstrument], test: [+d]}"), 5, "configurations.pydebug.windows.build[0]", "-c takes Debug or Release"),
    "windows -c twice": (_config("windows: {build: [-c, Release, -c, Debug], test: [+d]}"), 5, "configurations.pydebug.windows.build[2]", "listed twice"),
    "windows test flag twice": (_config("windows: {build: [-c, Release], test: [+d, +d]}"), 5, "configurations.pydebug.windows.test[1]", "listed twice"),
    "windows row installing": (WINDOWS_OK.replace("    windows: {build: [], test: []}\n", "    windows: {build: [], test: []}\n    install: true\n"),
                               13, "rows.debian-12.configurations[0]", "installs (make install)"),
    "windows row with missing_ok": (WINDOWS_OK + "    missing_ok: {_tkinter: no Tk here at all}\n", 13, "rows.debian-12.missing_ok", "takes no missing_ok"),
    "cpython file with more digits": (_row("cpython: https://www.python.org/ftp/python/3.13.5/Python-3.13.50.tgz"), 11,
                                      "rows.debian-12.cpython", "not its folder's (3.13.5)"),
    "windows build -p": (_config("windows: {build: [-p, ARM64], test: []}"), 5, "configurations.pydebug.windows.build[0]", "-p and -E are verify's own"),
    "windows -c Fast": (_config("windows: {build: [-c, Fast], test: [+d]}"), 5, "configurations.pydebug.windows.build[0]", "-c takes Debug or Release"),
    "windows release tested as debug": (_config("windows: {build: [-c, Release], test: []}"), 5, "configurations.pydebug.windows.test", "with +d"),
    "windows debug tested as release": (_config("windows: {build: [], test: [+d]}"), 5, "configurations.pydebug.windows.test", "with +d"),
    "windows free-threaded build only": (_config("windows: {build: [--disable-gil], test: []}"), 5, "configurations.pydebug.windows.test", "in both build and test"),
    "windows test option": (_config("windows: {build: [], test: [-x]}"), 5, "configurations.pydebug.windows.test[0]", "not a test.bat option"),
    "windows build flag twice": (_config("windows: {build: [--disable-gil, --disable-gil], test: [--disable-gil]}"), 5, "configurations.pydebug.windows.build[1]", "listed twice"),
    # cpython: Debian's archive (apt-get) or a python.org release tarball; a Windows runner has no apt-get
    "cpython from Debian on windows": (WINDOWS_OK + "    cpython: debian:trixie/python3.13\n", 13, "rows.debian-12.cpython", "apt-get"),
    "cpython from elsewhere": (_row("cpython: https://example.org/Python-3.13.5.tgz"), 11, "rows.debian-12.cpython", "not a CPython source"),
    "cpython file and folder disagree": (_row("cpython: https://www.python.org/ftp/python/3.13.5/Python-3.12.1.tgz"), 11,
                                         "rows.debian-12.cpython", "not its folder's (3.13.5)"),
    # worker_version: the 4.x Worker API buildbot.tac uses
    "worker 3.x": (_row("worker_version: 3.11.7"), 11, "rows.debian-12.worker_version", "4.0 or later"),
    "worker 0.9": (_row("worker_version: '0.9'"), 11, "rows.debian-12.worker_version", "4.0 or later"),
    # missing_ok: modules verify knows, each with a reason
    "missing_ok unknown module": (_row("missing_ok: {_tkinter: no Tk here, _foo: not on this base}"), 11, "rows.debian-12.missing_ok._foo", "known: _ssl"),
    "missing_ok one-word reason": (_row("missing_ok: {_uuid: because}"), 11, "rows.debian-12.missing_ok._uuid", "in a few words"),
    "missing_ok two-line reason": (_row('missing_ok: {_uuid: "no libuuid\\nhere"}'), 11, "rows.debian-12.missing_ok._uuid", "one line"),
    # the rest
    "description on two lines": (_config('description: "Debug\\nbuild"'), 5, "configurations.pydebug.description", "one line"),
    "row named all": (MINIMAL.replace("debian-12:", "all:"), 6, "rows.all", "reserved"),
    "configuration named all": (MINIMAL.replace("pydebug", "all"), 3, "configurations.all", "reserved"),
    "timeout_factor near zero": (_config("timeout_factor: 0.0001"), 5, "configurations.pydebug.timeout_factor", "greater than or equal to 0.25"),
}


@pytest.mark.parametrize("text, line, field, reason", REFUSED.values(), ids=REFUSED.keys())
def test_values_that_could_hurt_or_lie_are_refused(write_matrix, text, line, field, reason):
    error = _error(write_matrix, text)
    assert (error.line, error.field) == (line, field), str(error)
    assert reason in error.reason, str(error)


ACCEPTED = {
    "missing_ok with CPython's module names": _row("missing_ok: {_tkinter: no Tk on this base, _dbm: no ndbm here, _uuid: no libuuid here}"),
    "bootstrap a repo/debian:12 base": MINIMAL.replace("base: debian:12", "base: fleetbake-test/debian:12")
    + "    bootstrap: {suite: bookworm, mirror: http://deb.debian.org/debian, security_mirror: http://deb.debian.org/debian-security}\n",
    "bootstrap a base tagged with its suite": MINIMAL.replace("base: debian:12", "base: debian:trixie") + "    bootstrap: {suite: trixie, mirror: http://deb.debian.org/debian}\n",
    "bootstrap an Ubuntu base": MINIMAL.replace("base: debian:12", "base: ubuntu:24.04") + "    bootstrap: {suite: noble, mirror: http://archive.ubuntu.com/ubuntu}\n",
    "configure variables and values": _flags("CC=/nonexistent/cc, LIBFFI_CFLAGS=-I/opt/ffi, CFLAGS=-UNDEBUG, --with-lto=thin, --disable-gil"),
    "regrtest names": _config("smoke: [test_os, test.test_sys, test_asyncio.test_tasks, test_EOF]"),
    "sanitizer and locale env": _config("env: {ASAN_OPTIONS: detect_leaks=0, LC_ALL: C.UTF-8, LDFLAGS: -lm}"),
    "a later worker": _row("worker_version: 5.0.1"),
    "a windows row": WINDOWS_OK,
    "a windows row with its smoke and a python.org release": WINDOWS_OK + "    smoke: [test_winreg]\n"
    "    cpython: https://www.python.org/ftp/python/3.13.5/Python-3.13.5.tgz\n",
    "windows release and free-threaded flags": _config("windows: {build: [-c, Release, --disable-gil], test: [+d, --disable-gil]}"),
    "a python.org pre-release": _row("cpython: https://www.python.org/ftp/python/3.14.0/Python-3.14.0rc2.tgz"),
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_real_values_stay_accepted(write_matrix, text):
    assert matrix.load(write_matrix(text)).rows


# --- any file handed to --matrix: one line, never a traceback, bounded cost ---


def _laughs(levels=9):
    lines = ["a0: &a0 [test_lol, test_lol, test_lol, test_lol, test_lol, test_lol, test_lol, test_lol, test_lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nsmoke: *a{levels}\n"


def _merge_bomb(levels=6):
    # PyYAML's merge-key flattening copies each merged mapping's pairs: 9 ** levels of them.
    lines = ["m0: &m0 {k: 1}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}], k{i}: 1}}" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


HOSTILE_TEXT = {
    "100000 nested [": ("smoke: " + "[" * 100_000 + "]" * 100_000 + "\n", 1, "nested more than 32 levels"),
    "100000 nested {": ("smoke: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n", 1, "nested more than 32 levels"),
    "a long chain of aliases": ("\n".join(["c0: &c0 [x]"] + [f"c{i}: &c{i} [*c{i - 1}]" for i in range(1, 5000)]) + "\n", 32, "counting aliases"),
    "billion laughs": (_laughs(), 6, "once aliases are expanded"),
    "merge-key bomb": (_merge_bomb(), None, "once aliases are expanded"),
    "an alias inside its own anchor": (MINIMAL + "loop: &loop [*loop]\n", 11, "refers to the node that contains it"),
    "a control character": (MINIMAL.replace("test_sys", "test_sys\x07"), 1, "character #x0007 is not allowed"),
    "an explicit tag PyYAML cannot build": (_config("install: !!bool maybe"), 5, "explicit YAML tag !!bool"),
    "a date that is no date": (_config("description: 2024-13-45"), 5, "a date is not a matrix value"),
    "a 5000-digit number": (_config("timeout_factor: " + "9" * 5000), 5, "is not a number that can be read"),
    "a number int() refuses": (_row("uid: 0x_"), 11, "'0x_' is not a number that can be read"),
    "two documents": (MINIMAL + "---\n" + MINIMAL, 11, "malformed YAML"),
    "a list at the top": ("- smoke\n", 1, "top level must be a mapping"),
}


@pytest.mark.parametrize("text, line, reason", HOSTILE_TEXT.values(), ids=HOSTILE_TEXT.keys())
def test_hostile_yaml_is_one_line(write_matrix, text, line, reason):
    error = _error(write_matrix, text)
    assert reason in error.reason, str(error)
    if line is not None:
        assert error.line == line, str(error)


def test_bytes_that_are_not_utf8_name_their_line(tmp_path):
    path = tmp_path / "latin1.yml"
    path.write_bytes(MINIMAL.lstrip().replace("debian-12:", "debian-12:  # caf\xe9").encode("latin-1"))
    with pytest.raises(matrix.MatrixError) as info:
        matrix.load(path)
    assert (info.value.line, info.value.reason) == (6, "not UTF-8 text (byte 0xe9 at offset 102)")


def test_size_limit_is_the_file_not_the_matrix(tmp_path, write_matrix):
    text = MINIMAL.lstrip()
    padded = text + "#" * (matrix.MAX_BYTES - len(text) - 1) + "\n"
    assert matrix.load(write_matrix(padded)).rows  # exactly the limit still loads
    with pytest.raises(matrix.MatrixError, match="larger than 1 MiB"):
        matrix.load(write_matrix(padded + "\n"))


def test_directories_and_special_files_are_refused_without_reading(tmp_path):
    with pytest.raises(matrix.MatrixError, match=": is a directory, not a matrix file$"):
        matrix.load(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # no writer: opening it for reading must not wait for one
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("load() waited for the FIFO's writer"))
    signal.alarm(10)
    try:
        with pytest.raises(matrix.MatrixError, match="not a regular file"):
            matrix.load(fifo)
    finally:
        signal.alarm(0)


def _capped():
    # Should a check regress, a runaway read or expansion ends here instead of on the machine.
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _hostile_file(kind, tmp):
    path = tmp / "m.yml"
    if kind == "not UTF-8":
        path.write_bytes(b"smoke: [test_sys]\n# \xff\xfe\n")
    elif kind == "nested":
        path.write_text("a: " + "[" * 100_000)
    elif kind == "billion laughs":
        path.write_text(_laughs())
    elif kind == "2 MiB":
        path.write_text("#" * (2 << 20))
    elif kind == "a sparse 1 TiB file":  # a read without a bound would try to allocate all of it
        path.touch()
        os.truncate(path, 1 << 40)
    elif kind == "a directory":
        path = tmp
    elif kind == "a FIFO":
        os.mkfifo(path)
    elif kind == "/dev/zero":
        path = Path("/dev/zero")
    return path


@pytest.mark.parametrize("kind", ["not UTF-8", "nested", "billion laughs", "2 MiB", "a sparse 1 TiB file", "a directory", "a FIFO", "/dev/zero"])
def test_cli_any_file_is_one_line_and_exit_2(tmp_path, kind):
    path = _hostile_file(kind, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "matrix", "--matrix", str(path)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60, preexec_fn=_capped,
    )
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}"), result.stderr
    assert result.returncode == 2
