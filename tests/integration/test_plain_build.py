"""`docker build images/debian/debian-12`, as the README says anyone can: the committed folder, built by the plain
docker CLI with only this host's extra CA certificates dropped into its CA folder, gives `invoke build`'s image:
the same file tree and the same configuration (less the labels `invoke build` adds from the checkout's git)."""

import shutil
import subprocess

from fleetbake import paths
from fleetbake.pipeline import identity, render
from integration.test_packer_image import config, tree


def test_the_committed_folder_builds_with_the_docker_cli_into_invoke_builds_image(client, image, live_project, tmp_path):
    row = live_project.rows["debian-12"]
    folder = tmp_path / row.name
    shutil.copytree(paths.image_dir(live_project, row), folder)
    # This host's CA certificates, where `invoke build` puts them in its context: nothing else of render's output.
    committed = render.render_row(live_project, row, None)
    with_certs = render.render_row(live_project, row, render.ca_certs_from(None))
    extra = {name: item for name, item in with_certs.items() if name not in committed}
    assert all("/ca-certificates/" in name and name.endswith(".crt") for name in extra), sorted(extra)
    for name, item in extra.items():
        (folder / name).write_bytes(item.content)

    origin = identity.row_source(live_project, row)
    before = {i.id for i in client.images.list(all=True)}
    built = subprocess.run(["docker", "build", "-q", "--build-arg", f"SOURCE_DATE_EPOCH={origin.epoch}", str(folder)],
                           capture_output=True, text=True, timeout=1800, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    plain = client.images.get(built.stdout.strip().splitlines()[-1])
    made = plain.id not in before  # a build that ran from the layer cache ends on an image that was already there
    try:
        ours, theirs = config(client.images.get(image.image_id)), config(plain)
        assert {k: v for k, v in ours.items() if k != "Labels"} == {k: v for k, v in theirs.items() if k != "Labels"}
        # The Dockerfile's labels (and the base's, inherited); invoke build adds the checkout's on top.
        assert identity.static_labels(row).items() <= theirs["Labels"].items() <= ours["Labels"].items()
        assert tree(client, plain.id) == tree(client, image.image_id)
    finally:
        if made:
            client.images.remove(plain.id, noprune=True)
