"""fleetbake/operate/prune.py against the real Docker engine (tests/test_prune.py has the fake CLI).

The images are this test's own: tiny LABEL-only images on the debian-12 base, in a row of their own. The real
Docker CLI answers every call; only the image list is narrowed to that row, and a removal of anything else
fails the test before it reaches the engine: the host's worker images are never listed, never removed.
"""

import io
import uuid

import pytest

from fleetbake.operate import prune
from fleetbake.pipeline import base

MINE = "io.fleetbake.test.prune-row"  # on this test's containers: its teardown removes them, then its images


@pytest.fixture
def row(client):
    name = f"fbtest-prune-{uuid.uuid4().hex[:12]}"
    yield name
    for container in client.containers.list(all=True, filters={"label": f"{MINE}={name}"}):
        container.remove(force=True, v=True)
    for image in client.images.list(all=True, filters={"label": f"{prune.ROW_LABEL}={name}"}):
        client.images.remove(image.id, force=True)


@pytest.fixture(scope="module")
def base_id(live_project):
    return base.ensure_base(live_project.rows["debian-12"], log=print)


class Images:
    def __init__(self, client, base_id, row):
        self.client, self.base_id, self.row, self.ids, self.names = client, base_id, row, {}, set()

    def make(self, name, day, tagged=True):
        """An image of the row, created (by its label) on 2026-11-<day>; tagged ROW:NAME, or not tagged at all."""
        dockerfile = (f"FROM {self.base_id}\nLABEL {prune.ROW_LABEL}={self.row} "
                      f"{prune.CREATED_LABEL}=2026-11-{day:02d}T02:00:00Z io.fleetbake.test.name={name}\n")
        tag = f"{self.row}:{name}" if tagged else None
        image, _ = self.client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
        self.ids[name] = image.id
        self.names |= {image.id, *([tag] if tag else [])}
        return image.id

    def present(self):
        """name -> its tags, for each of this test's images still in the engine."""
        out = {}
        for name, image_id in self.ids.items():
            try:
                out[name] = self.client.images.get(image_id).tags
            except Exception:  # docker.errors.ImageNotFound
                pass
        return out


class Engine:
    """The real Docker CLI (prune.run_docker), with the image list narrowed to `row`. `hooks[(verb, noun)]` runs
    just before the first such call is forwarded: what another process could do in between."""

    def __init__(self, images, hooks=None):
        self.cli, self.images, self.hooks, self.calls = prune.run_docker("docker"), images, dict(hooks or {}), []

    def __call__(self, args):
        args = list(args)
        self.calls.append(args)
        if args[:2] == ["image", "ls"]:
            assert args == ["image", "ls", "--quiet", "--no-trunc", "--filter", f"label={prune.ROW_LABEL}"]
            args += ["--filter", f"label={prune.ROW_LABEL}={self.images.row}"]
        if args[:2] == ["image", "rm"]:
            assert {a for a in args[2:] if not a.startswith("-")} <= self.images.names, f"not this test's image: {args}"
        hook = self.hooks.pop(tuple(args[:2]), None)
        if hook:
            hook(args)
        return self.cli(args)

    def removals(self):
        return [c[2:] for c in self.calls if c[:2] == ["image", "rm"]]


def line_of(lines, image_id):
    [line] = [line for line in lines if line.split()[1] == image_id.split(":")[1][:12]]
    return line


def test_the_newest_of_the_row_and_every_image_a_container_uses_survive(client, run, row, base_id):
    images = Images(client, base_id, row)
    # Built newest first: Docker's own Created order is the reverse of the label's, which is what counts.
    newest = images.make("newest", 6)
    old = images.make("old", 5)
    running = images.make("running", 4, tagged=False)
    stopped = images.make("stopped", 3)
    old_untagged = images.make("old-untagged", 2, tagged=False)
    run(running, command=["sleep", "600"], labels={MINE: row})
    exited = run(stopped, command=["true"], labels={MINE: row})
    assert exited.wait(timeout=60)["StatusCode"] == 0

    dry, lines = Engine(images), []
    assert prune.prune(dry, log=lines.append) == 0
    assert dry.removals() == [] and len(lines) == 5
    assert line_of(lines, newest).startswith("keep    ") and f"newest of {row}" in line_of(lines, newest)
    for image_id in (running, stopped):
        assert line_of(lines, image_id).startswith("keep    ") and "a container uses it" in line_of(lines, image_id)
    for image_id in (old, old_untagged):
        assert line_of(lines, image_id).startswith("remove  ") and "(dry run" in line_of(lines, image_id)
    assert set(images.present()) == {"newest", "old", "running", "stopped", "old-untagged"}

    engine, lines = Engine(images), []
    assert prune.prune(engine, delete=True, log=lines.append) == 0
    assert engine.removals() == [[f"{row}:old"], [old_untagged]]  # by tag, an untagged one by ID; never --force
    assert images.present() == {"newest": [f"{row}:newest"], "running": [], "stopped": [f"{row}:stopped"]}
    assert line_of(lines, old).startswith("removed ") and line_of(lines, old_untagged).startswith("removed ")


def test_an_image_a_container_takes_meanwhile_is_refused_by_the_engine_and_reported(client, run, row, base_id,
                                                                                   monkeypatch, capsys):
    images = Images(client, base_id, row)
    images.make("newest", 6)
    victim = images.make("victim", 5)
    ghostly = images.make("ghostly", 4, tagged=False)
    ghost = run(ghostly, command=["true"], labels={MINE: row})
    ghost.wait(timeout=60)
    taken = []
    hooks = {
        # Listed, then gone before the inspect: it uses nothing, and the prune goes on.
        ("container", "inspect"): lambda args: ghost.remove(v=True),
        # Listed unused, then a container starts on it: only the engine can refuse, if nothing forces it.
        ("image", "rm"): lambda args: taken.append(run(victim, command=["sleep", "600"], labels={MINE: row})),
    }
    engine = Engine(images, hooks)
    monkeypatch.setattr(prune, "run_docker", lambda path: engine)
    assert prune.main(["--delete"]) == 1  # one image could not be removed
    captured = capsys.readouterr()
    assert captured.err == ""  # no "prune: error": it went through to the end
    out = captured.out.splitlines()

    assert taken and taken[0].image.id == victim
    assert engine.removals() == [[f"{row}:victim"], [ghostly]]
    assert not [c for c in engine.calls if "-f" in c or "--force" in c]
    line = line_of(out, victim)
    assert line.startswith("kept    ") and "conflict" in line and "docker image rm" in line, line
    assert images.present() == {"newest": [f"{row}:newest"], "victim": [f"{row}:victim"]}
    assert line_of(out, ghostly).startswith("removed ")
