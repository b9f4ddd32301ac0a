"""What is inside a worker image, read from inside it (stdlib only; the image's own python3 runs this file).

`python3 -I software_collect.py` prints one JSON object: the OS release, the compilers and build
tools with their versions, the system Python, the worker's virtualenv (its Python, buildbot-worker
and every package in it), and every distribution package with its version (dpkg or rpm). Nothing
here comes from the matrix: it is what the image holds. fleetbake.pipeline.software runs it in a
container of the image with no network.
"""

import json
import os
import re
import subprocess
import sys

WORKER_VENV = os.environ.get("WORKER_VENV", "/opt/buildbot-worker")
# name -> the command whose first line of output names its version
TOOLS = {
    "gcc": ["gcc", "--version"],
    "g++": ["g++", "--version"],
    "clang": ["clang", "--version"],
    "make": ["make", "--version"],
    "gdb": ["gdb", "--version"],
    "git": ["git", "--version"],
    "pkg-config": ["pkg-config", "--version"],
    "openssl": ["openssl", "version"],
    "ccache": ["ccache", "--version"],
    "xvfb-run": None,  # present or not: it has no version option
}


def run(argv):
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def which(name):
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def os_release(path="/etc/os-release"):
    found = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep and re.fullmatch(r"[A-Z_]+", key):
                    found[key] = value.strip().strip('"')
    except OSError:
        pass
    return {key: found[key] for key in ("PRETTY_NAME", "ID", "VERSION_ID", "VERSION_CODENAME") if key in found}


def tools():
    found = {}
    for name, argv in TOOLS.items():
        path = which(name)
        if path is None:
            continue
        output = run(argv) if argv else ""
        found[name] = (output or "").strip().splitlines()[0] if output else "installed"
    return found


def packages():
    """{"manager": "dpkg"|"rpm", "packages": {name: version}} (architecture-qualified where several exist)."""
    if which("dpkg-query"):
        output = run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Architecture}\t${Version}\n"]) or ""
        manager = "dpkg"
    elif which("rpm"):
        output = run(["rpm", "-qa", "--qf", "ii \t%{NAME}\t%{ARCH}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\n"]) or ""
        manager = "rpm"
    else:
        return {"manager": None, "packages": {}}
    rows = [line.split("\t") for line in output.splitlines() if line.count("\t") == 3]
    installed = [(name, arch, version) for status, name, arch, version in rows if status.startswith("ii")]
    names = [name for name, _, _ in installed]
    listed = {}
    for name, arch, version in installed:
        key = name if names.count(name) == 1 else f"{name}:{arch}"
        listed[key] = version
    return {"manager": manager, "packages": dict(sorted(listed.items()))}


def venv(path=WORKER_VENV):
    python = os.path.join(path, "bin", "python")
    if not os.path.isfile(python):
        return None
    code = ("import json, platform, importlib.metadata as m; print(json.dumps({'python': platform.python_version(), "
            "'packages': {d.metadata['Name']: d.version for d in m.distributions()}}))")
    output = run([python, "-I", "-c", code])
    if not output:
        return None
    data = json.loads(output)
    data["packages"] = dict(sorted(data["packages"].items(), key=lambda item: item[0].lower()))
    data["buildbot-worker"] = next((v for k, v in data["packages"].items() if k.lower() == "buildbot-worker"), None)
    data["path"] = path
    return data


def collect():
    return {
        "os": os_release(),
        "kernel_arch": os.uname().machine,
        "tools": tools(),
        "system_python": sys.version.split()[0],
        "worker": venv(),
        **packages(),
    }


if __name__ == "__main__":
    print(json.dumps(collect(), sort_keys=True))
