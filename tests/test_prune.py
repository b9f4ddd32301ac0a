"""fleetbake/operate/prune.py: which worker images go, on a fake image list and a fake Docker CLI."""

import ast
import datetime as dt
import functools
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from fleetbake.operate import prune
from fleetbake.pipeline import identity

UTC = dt.timezone.utc


def image(id_, row, day, tags=(), hour=0):
    return prune.Image(f"sha256:{id_}", row, dt.datetime(2026, 11, day, hour, tzinfo=UTC), tuple(tags))


def test_the_labels_are_the_ones_fleetbake_gives():
    assert prune.ROW_LABEL == f"{identity.LABEL_PREFIX}.row" and prune.CREATED_LABEL == identity.CREATED_LABEL


def test_the_newest_of_each_row_and_every_image_a_container_uses_stay():
    images = [
        image("a1", "debian-12", 26, ["fleetbake/worker:debian-12-aaaa"]),
        image("a2", "debian-12", 28, ["fleetbake/worker:debian-12", "fleetbake/worker:debian-12-bbbb"]),
        image("a3", "debian-12", 27),  # untagged: the previous pull
        image("a0", "debian-12", 20),  # a stopped container still uses it
        image("b1", "fedora-44", 10, ["ghcr.io/python/worker:fedora-44"]),
    ]
    decisions = {d.image.id: d for d in prune.decide(images, used={"sha256:a0", "sha256:zz"})}
    keep = {id_ for id_, d in decisions.items() if d.keep}
    assert keep == {"sha256:a2", "sha256:a0", "sha256:b1"}
    assert decisions["sha256:a2"].why == "newest of debian-12" and decisions["sha256:b1"].why == "newest of fedora-44"
    assert decisions["sha256:a0"].why == "a container uses it"
    assert decisions["sha256:a1"].why == "older than the newest 1 of debian-12, no container uses it"
    keep2 = {d.image.id for d in prune.decide(images, used=set(), keep=2) if d.keep}
    assert keep2 == {"sha256:a2", "sha256:a3", "sha256:b1"}
    # The same time: the order is still fixed (by ID), and one stays.
    twins = [image("t1", "r", 1), image("t2", "r", 1)]
    assert [d.keep for d in prune.decide(twins, set())] == [True, False]


@pytest.mark.parametrize("text, expected", [
    ("2026-11-28T02:10:00Z", dt.datetime(2026, 11, 28, 2, 10, tzinfo=UTC)),
    ("2026-11-28T02:10:00.123456789Z", dt.datetime(2026, 11, 28, 2, 10, 0, 123456, tzinfo=UTC)),
    ("2026-11-28T03:10:00+01:00", dt.datetime(2026, 11, 28, 2, 10, tzinfo=UTC)),
    ("2026-11-28", None),
    ("", None),
    ("2026-13-28T02:10:00Z", None),
])
def test_docker_and_oci_times(text, expected):
    assert prune.parse_time(text) == expected


def inspect(id_, row=None, created="2026-11-01T00:00:00Z", label_created=None, tags=()):
    labels = {"org.opencontainers.image.title": "x"}
    if row:
        labels["io.fleetbake.row"] = row
    if label_created:
        labels["org.opencontainers.image.created"] = label_created
    return {"Id": f"sha256:{id_}", "Created": created, "RepoTags": list(tags), "Config": {"Labels": labels}}


def test_the_age_is_the_created_label_else_the_images_created_time():
    labelled = prune.image_from_inspect(inspect("a", "debian-12", created="2026-01-01T00:00:00Z",
                                                label_created="2026-11-28T00:00:00Z", tags=["<none>:<none>"]))
    assert labelled.created.month == 11 and labelled.tags == ()
    plain = prune.image_from_inspect(inspect("b", "debian-12", created="2026-02-01T00:00:00.5Z"))
    assert plain.created.month == 2
    assert prune.image_from_inspect(inspect("c", row=None)) is None  # not a fleetbake worker image
    assert prune.image_from_inspect({"Id": "sha256:d", "Config": {"Labels": None}}) is None


class FakeDocker:
    def __init__(self, images, containers, refuse=()):
        self.images, self.containers, self.refuse, self.calls = images, containers, set(refuse), []

    def __call__(self, args):
        self.calls.append(list(args))
        if args[:2] == ["image", "ls"]:
            assert args[2:] == ["--quiet", "--no-trunc", "--filter", "label=io.fleetbake.row"]
            return "".join(f"{i['Id']}\n" * max(1, len(i["RepoTags"])) for i in self.images
                           if "io.fleetbake.row" in i["Config"]["Labels"])
        if args[:2] == ["image", "inspect"]:
            return json.dumps([i for i in self.images if i["Id"] in args[2:]])
        if args[:2] == ["container", "ls"]:
            return "".join(f"{c}\n" for c in self.containers)
        if args[:2] == ["container", "inspect"]:
            return json.dumps([{"Id": c, "Image": self.containers[c]} for c in args[2:]])
        if args[:2] == ["image", "rm"]:
            if set(args[2:]) & self.refuse:
                raise prune.PruneError("docker image rm: conflict: unable to remove repository reference")
            return ""
        raise AssertionError(args)


IMAGES = [
    inspect("new", "debian-12", label_created="2026-11-28T02:00:00Z", tags=["fleetbake/worker:debian-12"]),
    inspect("old", "debian-12", label_created="2026-11-27T02:00:00Z", tags=["fleetbake/worker:debian-12-1234"]),
    inspect("pulled", "debian-12", label_created="2026-11-26T02:00:00Z"),
    inspect("running", "debian-12", label_created="2026-11-20T02:00:00Z", tags=["fleetbake/worker:debian-12-0000"]),
    inspect("base", None, tags=["debian:12"]),
]


def test_a_dry_run_removes_nothing_and_delete_removes_by_name_without_force():
    docker = FakeDocker(IMAGES, {"c1": "sha256:running"})
    lines = []
    assert prune.prune(docker, log=lines.append) == 0
    assert not [c for c in docker.calls if c[:2] == ["image", "rm"]]
    assert sum(line.startswith("remove  ") and "(dry run: --delete removes it)" in line for line in lines) == 2
    assert any(line.startswith("keep    new") and "newest of debian-12" in line for line in lines)
    assert any(line.startswith("keep    running") and "a container uses it" in line for line in lines)
    assert not any("base" in line for line in lines)  # not a fleetbake image: never listed, never removed

    docker = FakeDocker(IMAGES, {"c1": "sha256:running"})
    assert prune.prune(docker, delete=True, log=lines.append) == 0
    removals = [c[2:] for c in docker.calls if c[:2] == ["image", "rm"]]
    assert removals == [["fleetbake/worker:debian-12-1234"], ["sha256:pulled"]]  # by tag; untagged by ID; no -f
    assert all("--force" not in c and "-f" not in c for c in docker.calls)


def test_an_image_docker_refuses_is_kept_and_said_so():
    docker = FakeDocker(IMAGES, {}, refuse={"fleetbake/worker:debian-12-1234"})
    lines = []
    assert prune.prune(docker, delete=True, log=lines.append) == 1
    assert any(line.startswith("kept    old") and "conflict" in line for line in lines), lines
    assert any(line.startswith("removed pulled") for line in lines)


FAKE_DOCKER = """#!{python}
import json, sys
state = json.load(open({state!r}))
args = sys.argv[1:]
open({log!r}, "a").write(json.dumps(args) + "\\n")
if args[:2] == ["image", "ls"]:
    print("\\n".join(i["Id"] for i in state["images"] if "io.fleetbake.row" in i["Config"]["Labels"]))
elif args[:2] == ["image", "inspect"]:
    print(json.dumps([i for i in state["images"] if i["Id"] in args[2:]]))
elif args[:2] == ["container", "ls"]:
    print("\\n".join(state["containers"]))
elif args[:2] == ["container", "inspect"]:
    print(json.dumps([{{"Image": state["containers"][c]}} for c in args[2:]]))
elif args[:2] == ["image", "rm"]:
    pass
else:
    sys.exit("fake docker: " + " ".join(args))
"""


def test_the_script_runs_alone_with_the_standard_library(tmp_path):
    """What the timers run: `python -I fleetbake/operate/prune.py --delete`, no fleetbake import, any Docker CLI."""
    source = (ROOT / "fleetbake" / "operate" / "prune.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert all(m.split(".")[0] in sys.stdlib_module_names for m in modules), modules
    state, log = tmp_path / "state.json", tmp_path / "calls"
    state.write_text(json.dumps({"images": IMAGES, "containers": {"c1": "sha256:running"}}))
    fake = tmp_path / "docker"
    fake.write_text(FAKE_DOCKER.format(python=sys.executable, state=str(state), log=str(log)))
    fake.chmod(0o755)
    script = str(ROOT / "fleetbake" / "operate" / "prune.py")
    result = subprocess.run([sys.executable, "-I", script, "--delete", f"--docker={fake}"], capture_output=True,
                            text=True, timeout=60, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "removed old" in result.stdout and "removed pulled" in result.stdout and "keep    new" in result.stdout
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert ["image", "rm", "fleetbake/worker:debian-12-1234"] in calls and ["image", "rm", "sha256:pulled"] in calls

    missing = subprocess.run([sys.executable, "-I", script, f"--docker={tmp_path / 'nope'}"], capture_output=True,
                             text=True, timeout=60, check=False)
    assert missing.returncode == 1 and missing.stderr.splitlines() == [
        f"prune: error: {tmp_path / 'nope'}: not found (the Docker CLI; --docker PATH)"]
    keep0 = subprocess.run([sys.executable, "-I", script, "--keep=0"], capture_output=True, text=True, timeout=60,
                           check=False)
    assert keep0.returncode == 2 and "--keep takes 1 or more" in keep0.stderr
    assert os.access(script, os.R_OK)


class Vanishing(FakeDocker):
    """A container and an image that go away between the list and the inspect (another prune, a `run --rm`)."""

    def __call__(self, args):
        if args[:2] in (["container", "inspect"], ["image", "inspect"]) and {"gone", "sha256:gone"} & set(args[2:]):
            self.calls.append(list(args))
            raise prune.PruneError(f"docker {args[0]} inspect: Error response from daemon: No such {args[0]}: gone")
        return super().__call__(args)


def test_a_container_or_image_gone_since_the_list_is_skipped_not_an_error():
    gone = inspect("gone", "debian-12", label_created="2026-11-01T00:00:00Z")
    docker = Vanishing([*IMAGES, gone], {"c1": "sha256:running", "gone": "sha256:pulled"})
    lines = []
    assert prune.prune(docker, delete=True, log=lines.append) == 0
    assert any(line.startswith("keep    running") for line in lines) and not any("gone" in line for line in lines)
    assert [c[2:] for c in docker.calls if c[:2] == ["image", "rm"]] == [["fleetbake/worker:debian-12-1234"],
                                                                       ["sha256:pulled"]]

    class Failing(FakeDocker):  # any other failure still stops it: nothing is removed on a half-read state
        def __call__(self, args):
            if args[:2] == ["container", "inspect"]:
                raise prune.PruneError("docker container inspect: permission denied")
            return super().__call__(args)

    failing = Failing(IMAGES, {"c1": "sha256:running"})
    with pytest.raises(prune.PruneError, match="permission denied"):
        prune.prune(failing, delete=True, log=lines.append)
    assert not [c for c in failing.calls if c[:2] == ["image", "rm"]]


PRUNE = ROOT / "fleetbake" / "operate" / "prune.py"


@functools.lru_cache(maxsize=None)
def python39():
    """A real Python 3.9 (the README's oldest; macOS's /usr/bin/python3), if this machine has one. Each candidate
    is asked its version: a pyenv shim on PATH may name one it cannot run."""
    import glob
    import shutil

    for python in [*sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9"))), shutil.which("python3.9")]:
        if python and subprocess.run([python, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 9))"],
                                     capture_output=True, timeout=60, check=False).returncode == 0:
            return python
    return None


def test_the_script_is_python_3_9_source():
    """The README's "any Python 3.9+". The script imports nothing of the project
    (test_the_script_runs_alone_with_the_standard_library), so it is the one file."""
    assert_python_39_source(PRUNE)


def assert_python_39_source(path):
    """ast's feature_version rejects 3.10+ grammar (match, except*, type parameters), not a newer library call: the
    next test runs a real 3.9 where there is one."""
    tree = ast.parse(path.read_text(), feature_version=(3, 9))
    future = any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
                 and any(alias.name == "annotations" for alias in node.names) for node in tree.body)
    annotations = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.arg, ast.AnnAssign)) and n.annotation]
    annotations += [n.returns for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.returns]
    in_annotation = {id(node) for annotation in annotations for node in ast.walk(annotation)}
    types = {"None", "int", "str", "float", "bytes", "bool", "list", "dict", "set", "tuple", "type"}

    def is_type(node):
        node = node.value if isinstance(node, ast.Subscript) else node
        return (isinstance(node, ast.Constant) and node.value is None) or (isinstance(node, ast.Name) and node.id in types)

    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and (is_type(node.left) or is_type(node.right)):
            # `X | Y` of types: 3.10+ when evaluated; an annotation is not, with the __future__ import.
            assert id(node) in in_annotation and future, f"{path.name} line {node.lineno}: a union of types that 3.9 evaluates"


@pytest.mark.skipif(python39() is None, reason="no Python 3.9 here (python3.9 on PATH or pyenv's): only its grammar is checked")
def test_the_script_runs_with_python_3_9_as_with_this_python(tmp_path):
    state, log = tmp_path / "state.json", tmp_path / "calls"
    state.write_text(json.dumps({"images": IMAGES, "containers": {"c1": "sha256:running"}}))
    fake = tmp_path / "docker"
    fake.write_text(FAKE_DOCKER.format(python=sys.executable, state=str(state), log=str(log)))
    fake.chmod(0o755)
    results = []
    for python in (python39(), sys.executable):
        for args in ([], ["--delete"], ["--keep=0"], ["--docker", str(tmp_path / "nope")]):
            result = subprocess.run([python, "-I", str(PRUNE), f"--docker={fake}", *args], capture_output=True, text=True,
                                    timeout=60, check=False, cwd=tmp_path)
            results.append((args, result.returncode, result.stdout, result.stderr))
    assert results[:4] == results[4:]  # 3.9 says and does what this Python does
    assert results[1][1] == 0 and "removed pulled" in results[1][2], results[1]
