"""Packer's docker target is the Dockerfile's image: built for real from the same plan, it has the
same configuration and the same file tree, and it passes the same verification."""

import hashlib
import tarfile

import pytest

from fleetbake.pipeline import families, identity, packer, verify

# Files whose bytes carry the moment they were written: dpkg's and apt's logs, ldconfig's cache of
# file times. Their paths, modes and owners are still compared; only their bytes are not.
TIMESTAMPED = ("var/log/", "var/cache/ldconfig/aux-cache")
PYC_HEADER = 16  # magic, flags, source mtime, source size: a .pyc's bytes after it are its code


def tree(client, image_id: str) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, link target, digest) of the image's file system."""
    container = client.containers.create(image_id, entrypoint=["/bin/true"])
    try:
        entries = {}
        with tarfile.open(fileobj=_Stream(container.export(chunk_size=1 << 20)), mode="r|") as archive:
            for member in archive:
                digest = ""
                if member.isfile():
                    data = archive.extractfile(member).read()
                    if member.name.endswith(".pyc"):
                        data = data[PYC_HEADER:]
                    digest = "(timestamped)" if member.name.startswith(TIMESTAMPED) else hashlib.sha256(data).hexdigest()
                entries[member.name.rstrip("/")] = (member.type, member.mode, member.uid, member.gid, member.linkname,
                                                   digest)
        return entries
    finally:
        container.remove(force=True)


class _Stream:
    """A file-like reader over docker-py's chunk iterator (tarfile's stream mode reads forward only)."""

    def __init__(self, chunks):
        self.chunks, self.buffer = iter(chunks), b""

    def read(self, size=-1):
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buffer += chunk
        if size < 0:
            size = len(self.buffer)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data


# Every setting a container takes from its image (Tty, OpenStdin and the like, which Packer's `docker run -i -t`
# leaves in the committed config, are not: `docker run` takes those from its own flags).
CONFIG = ("Entrypoint", "Cmd", "Env", "User", "WorkingDir", "Volumes", "StopSignal", "Healthcheck", "ExposedPorts",
          "Shell", "OnBuild")


def config(image) -> dict:
    settings = {key: image.attrs["Config"].get(key) for key in CONFIG}
    settings["Labels"] = {k: v for k, v in (image.labels or {}).items() if k != identity.CREATED_LABEL}
    return settings


@pytest.fixture(scope="module")
def dockerfile_image(client, cold_rebuilds):
    """The Dockerfile's image, built without the cache (`invoke build --force`, shared with test_reproducible)."""
    return client.images.get(cold_rebuilds[-1][1])


@pytest.fixture(scope="module")
def packer_image(client, live_project, dockerfile_image):
    """Packer's, from the committed template, right after the Dockerfile's: both read Debian's archive as it is now
    (a cached layer from last week would differ by the updates published since)."""
    row = live_project.rows["debian-12"]
    packer.run(live_project, row, "docker", run_build=True, render_first=False, log=print)  # the committed template
    return client.images.get(identity.packer_image_tag(row))


@pytest.fixture(scope="module")
def trees(client, dockerfile_image, packer_image):
    """Each image's file tree, read once: (the Dockerfile's, Packer's)."""
    return tree(client, dockerfile_image.id), tree(client, packer_image.id)


def differences(ours: dict, theirs: dict) -> dict:
    """key -> (Dockerfile's, Packer's) for every setting, and every label, that differs."""
    found = {k: (ours[k], theirs[k]) for k in ours if k != "Labels" and ours[k] != theirs[k]}
    labels = ours["Labels"].keys() | theirs["Labels"].keys()
    found.update({f"label {k}": (ours["Labels"].get(k), theirs["Labels"].get(k)) for k in sorted(labels)
                  if ours["Labels"].get(k) != theirs["Labels"].get(k)})
    return found


def test_packer_image_has_the_dockerfile_images_configuration(client, image, dockerfile_image, packer_image):
    ours, theirs = config(dockerfile_image), config(packer_image)
    assert differences(ours, theirs) == {}
    # The verified image is this build's twin: the same settings and inputs (its revision label may be older).
    verified = config(client.images.get(image.image_id))
    assert {k: v for k, v in verified.items() if k != "Labels"} == {k: v for k, v in ours.items() if k != "Labels"}
    assert verified["Labels"][identity.INPUTS_LABEL] == ours["Labels"][identity.INPUTS_LABEL]
    assert packer_image.attrs["Config"]["Healthcheck"]["Test"] == ["CMD", *families.ENTRYPOINT, "health"]
    assert packer_image.labels[identity.INPUTS_LABEL] == image.inputs_hash


def test_packer_image_has_the_dockerfile_images_file_tree(trees):
    ours, theirs = trees
    only_dockerfile = sorted(set(ours) - set(theirs))
    only_packer = sorted(set(theirs) - set(ours))
    differ = sorted(path for path in set(ours) & set(theirs) if ours[path] != theirs[path])
    assert (only_dockerfile, only_packer) == ([], []), (only_dockerfile[:20], only_packer[:20])
    assert differ == [], [(path, ours[path], theirs[path]) for path in differ[:20]]
    assert len(ours) > 10000 and "opt/fleetbake/fleetbake/worker/entrypoint.py" in ours


def test_both_images_date_the_build_user_from_the_inputs_not_the_build_day(client, live_project, dockerfile_image,
                                                                          packer_image):
    """useradd writes the day of the password's last change into /etc/shadow: SOURCE_DATE_EPOCH's day in both, never
    the day the image was built (Packer's provisioners get it as the Dockerfile's RUNs do)."""
    row = live_project.rows["debian-12"]
    day = identity.row_source(live_project, row).epoch // 86400
    for built in (dockerfile_image, packer_image):
        shadow = client.containers.run(built.id, ["shadow", row.spec.user], entrypoint=["getent"], user="root",
                                       remove=True)
        assert int(shadow.decode().split(":")[2]) == day, (built.tags, shadow)


def test_packer_image_verifies(client, live_project, verified_image, dockerfile_image, packer_image, trees):
    """Packer's image passes the Dockerfile image's verification. Where it is, file for file and setting for setting,
    the very image that passed (the Dockerfile image rebuilt now has the verified image's ID, and Packer's has its
    tree and configuration), running the compile and the tests in it again would prove the same thing twice: the
    verified image's record stands for it. Otherwise (Debian's archive moved on since the verified image was built)
    it is verified for real."""
    from fleetbake.pipeline import record

    ours, theirs = trees
    if dockerfile_image.id == verified_image.image_id and ours == theirs and not differences(config(dockerfile_image),
                                                                                     config(packer_image)):
        passed, failed = record.status(verified_image.image_id)
        assert "pydebug" in passed and not failed, (passed, failed)
        return
    row = live_project.rows["debian-12"]
    [result] = verify.verify(live_project, row, ["pydebug"], log=print, image=packer_image.id)
    assert result.passed, result.reason
    assert result.image_id == packer_image.id
