# Generated from matrix.yml (row debian-13) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""ccache for the fleet's builds, on only when a cache volume is mounted (stdlib only).

The Linux images have ccache installed, a wrapper for each compiler (`gcc`, `cc`, `clang`, ...) in
the family's wrapper directory (FLEETBAKE_CCACHE_WRAPPERS: Debian /usr/lib/ccache, Fedora
/usr/lib64/ccache) and a system configuration (/etc/ccache.conf, configure-ccache.sh) that keeps
the cache and its temporary files under /ccache, an empty directory of the image owned by the
build user. The image declares no VOLUME there: nothing is cached unless the owner mounts one.

`decide` is the one place that says whether builds use it, for the root entrypoint (the worker,
`docker run IMAGE CMD`) and for `invoke verify --ccache` (which runs `python3 -I -m
fleetbake.worker.ccache env` in its container). ccache is on when the directory (WORKER_CCACHE_DIR,
default /ccache) is a mount point, mounted read-write, owned by the build user and writable by it
(a fresh named volume is: Docker copies the image directory's owner into it; root here has no
CAP_CHOWN or CAP_DAC_OVERRIDE and never takes a directory over), and the image has its compiler
wrappers. Then the builds' PATH starts with the wrapper directory, and CCACHE_DIR and
CCACHE_TEMPDIR name the volume; the fleet's `./configure` finds `gcc`, `cc` or `clang` through PATH,
so the fleet's UnixBuild needs no change. Otherwise nothing changes.

CCACHE_MAXSIZE bounds the cache (default DEFAULT_MAX_SIZE). It is checked here, because ccache fails
every compile on a value it cannot read, and 0 (no limit) is refused; it is always put into the builds'
environment, which outranks the configuration file a build step could write into the cache.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from dataclasses import asdict, dataclass, field

from fleetbake.worker import mounts

CACHE_DIR = "/ccache"
DIR_VAR = "WORKER_CCACHE_DIR"
WRAPPERS_VAR = "FLEETBAKE_CCACHE_WRAPPERS"  # the image's ENV: where its compiler wrappers are
MAX_SIZE_VAR = "CCACHE_MAXSIZE"
DEFAULT_MAX_SIZE = "5G"
# What ccache 4.7 reads as a size: a number, then k, M, G, T (decimal) or Ki, Mi, Gi, Ti (binary); G by default.
SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(k|M|G|T|Ki|Mi|Gi|Ti)?")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VOLUME_HINT = f"-v cpython-ccache:{CACHE_DIR}"


class SettingError(ValueError):
    """A bad ccache setting: the entrypoint stops with this one line and exit 2."""


@dataclass(frozen=True)
class Decision:
    """Whether builds use ccache; `env`: the variables to set for them (empty when off)."""

    enabled: bool
    directory: str
    reason: str
    env: dict[str, str] = field(default_factory=dict)
    warning: bool = False  # off although the owner asked for it: the log says `warning:`

    def line(self) -> str:
        """The one line the worker logs."""
        return f"ccache {'on' if self.enabled else 'off'}: {self.reason}"


def cache_dir(env: dict[str, str]) -> str:
    raw = env.get(DIR_VAR, "").strip()
    if not raw:
        return CACHE_DIR
    if not raw.startswith("/") or os.path.normpath(raw) != raw or raw == "/" or not re.fullmatch(r"[A-Za-z0-9_./-]+", raw):
        raise SettingError(f"{DIR_VAR}={raw!r}: an absolute, normalized path of letters, digits, '_', '.', '-' "
                           f"and '/' (default {CACHE_DIR})")
    return raw


def max_size(env: dict[str, str]) -> str:
    """CCACHE_MAXSIZE as ccache reads it, or the image's default; 0 (no limit) and what ccache cannot read are refused."""
    raw = env.get(MAX_SIZE_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_SIZE
    match = SIZE.fullmatch(raw)
    if not match:
        raise SettingError(f"{MAX_SIZE_VAR}={raw!r} is not a size ccache reads (e.g. 5G, 500M, 10Gi)")
    if float(match.group(1)) == 0:
        raise SettingError(f"{MAX_SIZE_VAR}={raw!r}: 0 means no limit; the cache must be bounded (e.g. 5G)")
    return raw


def settings(env: dict[str, str]) -> tuple[str, str]:
    """(cache directory, max size): every ccache setting, checked once, before anything starts."""
    return cache_dir(env), max_size(env)


def _with_wrappers(path: str, wrappers: str) -> str:
    entries = [entry for entry in path.split(":") if entry and entry.rstrip("/") != wrappers.rstrip("/")]
    return ":".join([wrappers, *entries])


def decide(env: dict[str, str], uid: int, user: str = "", mountinfo: str | None = None) -> Decision:
    """On when the cache directory is a read-write mount owned and writable by `uid`, and the image has its wrappers.

    Raises SettingError for a bad WORKER_CCACHE_DIR or CCACHE_MAXSIZE."""
    directory, size = settings(env)
    who = f"{user} (uid {uid})" if user else f"uid {uid}"
    table = mounts.table(mountinfo)
    if directory not in table:
        return Decision(False, directory, f"{directory} is not a mounted volume (mount one to cache compiles: "
                        f"{VOLUME_HINT if directory == CACHE_DIR else '-v VOLUME:' + directory})",
                        warning=bool(env.get(DIR_VAR, "").strip()))
    wrappers = env.get(WRAPPERS_VAR, "").strip()
    if not wrappers or not os.path.isdir(wrappers):
        return Decision(False, directory, f"{directory} is mounted, but this image has no compiler wrappers "
                        f"({WRAPPERS_VAR}={wrappers or 'unset'}): a fleetbake image from before ccache?", warning=True)
    try:
        info = os.lstat(directory)
    except OSError as exc:
        return Decision(False, directory, f"{directory}: {exc.strerror}", warning=True)
    if not stat.S_ISDIR(info.st_mode):
        return Decision(False, directory, f"{directory} is not a directory", warning=True)
    if table[directory]:
        return Decision(False, directory, f"{directory} is mounted read-only", warning=True)
    if info.st_uid != uid:
        return Decision(False, directory, f"{directory} is mounted but belongs to uid {info.st_uid}, not to the build "
                        f"user {who}: use a fresh named volume ({VOLUME_HINT}), or chown -R {uid} the directory first",
                        warning=True)
    if info.st_mode & (stat.S_IWUSR | stat.S_IXUSR) != (stat.S_IWUSR | stat.S_IXUSR):
        return Decision(False, directory, f"{directory} is mounted but its owner, the build user {who}, may not write "
                        f"it (mode {stat.S_IMODE(info.st_mode):o})", warning=True)
    changes = {
        "PATH": _with_wrappers(env.get("PATH") or DEFAULT_PATH, wrappers),
        "CCACHE_DIR": directory,
        "CCACHE_TEMPDIR": f"{directory}/tmp",
        # Always in the environment, which ccache reads before any file: a build step's `ccache -M 0`
        # writes the cache's own ccache.conf and would otherwise lift the bound.
        MAX_SIZE_VAR: size,
    }
    return Decision(True, directory, f"{directory} (a mounted volume, {MAX_SIZE_VAR}={size}); "
                    f"compilers through {wrappers}", changes)


def apply(env: dict[str, str], decision: Decision) -> dict[str, str]:
    """The builds' environment with the decision's variables (unchanged when ccache is off)."""
    return {**env, **decision.env}


def describe(env: dict[str, str]) -> str | None:
    """For info/host: where builds with this environment cache their compiles, None when they do not."""
    wrappers, directory = env.get(WRAPPERS_VAR, "").rstrip("/"), env.get("CCACHE_DIR", "")
    if not wrappers or not directory or (env.get("PATH") or "").split(":")[0].rstrip("/") != wrappers:
        return None
    return f"{directory} (max {env.get(MAX_SIZE_VAR, '').strip() or DEFAULT_MAX_SIZE})"


# --- ccache's statistics (ccache --print-stats), for verify's record ------------------------------

HIT_COUNTERS = ("direct_cache_hit", "preprocessed_cache_hit")
MISS_COUNTERS = ("cache_miss",)


def parse_stats(output: str) -> dict:
    """`ccache --print-stats` (ccache 4: one `counter<TAB>value` a line) as hits, misses, hit rate and the
    non-zero counters; {} when nothing parses (e.g. a ccache without --print-stats)."""
    counters: dict[str, int] = {}
    for line in output.splitlines():
        name, sep, value = line.strip().partition("\t")
        if sep and re.fullmatch(r"[a-z0-9_]+", name) and value.strip().isdigit():
            counters[name] = int(value)
    if not counters:
        return {}
    hits = sum(counters.get(name, 0) for name in HIT_COUNTERS)
    misses = sum(counters.get(name, 0) for name in MISS_COUNTERS)
    return {
        "hits": hits,
        "misses": misses,
        "hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
        "direct_hits": counters.get("direct_cache_hit", 0),
        "preprocessed_hits": counters.get("preprocessed_cache_hit", 0),
        "cache_size_kib": counters.get("cache_size_kibibyte", 0),
        "counters": {name: value for name, value in sorted(counters.items())
                     if value and not name.endswith("_timestamp")},
    }


def main(argv: list[str]) -> int:
    """`python3 -I -m fleetbake.worker.ccache env`: the decision for this process's user, as one JSON line
    (what verify runs in its container)."""
    if argv != ["env"]:
        print("usage: python3 -I -m fleetbake.worker.ccache env", file=sys.stderr)
        return 2
    env = dict(os.environ)
    try:
        decision = decide(env, os.getuid(), env.get("USER", ""))
    except SettingError as exc:
        print(f"ccache: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(asdict(decision), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
