"""`invoke diff IMAGE_A IMAGE_B` on two real images that differ in one file: it names the layer and the
file, shows what differs inside it (diffoscope), and exits 1; the same image twice exits 0."""

import io
import subprocess
import tarfile

import pytest

from conftest import ROOT

TAG = "fleetbake-test-diff"


def context(text: str) -> bytes:
    """Two files copied to / (a COPY into a folder would stamp the folder with the clock: a second difference)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM debian:12\nCOPY notes.txt same.txt /\n"),
                           ("notes.txt", text.encode()), ("same.txt", b"unchanged\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pair(client, image):  # `image`: the debian:12 base exists (it is the debian-12 row's)
    built = []
    for name, text in (("a", "cpython 3.13.5\nbuilt on tuesday\n"), ("b", "cpython 3.13.5\nbuilt on wednesday\n")):
        for entry in client.api.build(fileobj=io.BytesIO(context(text)), custom_context=True, tag=f"{TAG}:{name}",
                                      rm=True, forcerm=True, pull=False, decode=True):
            assert "error" not in entry, entry  # the engine reports a failed build in the stream, not by raising
        built.append(f"{TAG}:{name}")
    yield built
    for tag in built:
        client.images.remove(tag, force=True)


def invoke(*argv):
    return subprocess.run([str(ROOT / ".venv" / "bin" / "invoke"), *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_two_images_that_differ_in_one_file(pair):
    result = invoke("diff", *pair)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "they differ" in lines[0]
    layer = [line for line in lines if line.startswith("layer ")]
    assert len(layer) == 1 and layer[0].endswith("1 file(s) differ"), lines
    assert "  /notes.txt: size 32 != 34, content" in lines and not any("same.txt" in line for line in lines), lines
    inside = "\n".join(line for line in lines if line.startswith("    "))
    assert "built on tuesday" in inside and "built on wednesday" in inside  # diffoscope's view of the file


def test_the_same_image_twice_is_the_same(pair):
    result = invoke("diff", pair[0], pair[0])
    assert result.returncode == 0 and result.stdout.startswith("same image:"), result.stdout


def test_an_image_that_is_not_here_is_one_line(pair):
    result = invoke("diff", pair[0], f"{TAG}:missing")
    assert result.returncode != 0 and result.stderr.strip() == f"error: image {TAG}:missing is not here (docker images lists what is)"
