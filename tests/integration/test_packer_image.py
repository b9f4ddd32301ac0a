"""Packer's docker target, built for real from the same scripts, passes the same verification."""

from fleetbake import packer, verify


def test_packer_docker_image_builds_and_verifies(project, image, client):
    row = project.rows["debian-12"]
    template = packer.write(project, row, "docker", log=print)
    packer.validate(template)
    packer.build(template, log=print)
    built = client.images.get(packer.packer_image_tag(row))
    assert built.labels["io.fleetbake.builder"] == "packer"
    assert built.attrs["Config"]["Entrypoint"][:2] == ["/usr/bin/tini", "-e"]
    [result] = verify.verify(project, row, ["pydebug"], log=print, image=packer.packer_image_tag(row))
    assert result.passed, result.reason
    assert result.image_id == built.id
