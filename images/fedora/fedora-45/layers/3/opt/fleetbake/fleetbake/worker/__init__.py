# Generated from matrix.yml (row fedora-45) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""What runs inside a worker: the entrypoint (root supervisor), buildbot.tac, preflight, the
host:port parser, and the secret hunter (a build step of the test master's, and the owner's own check).
The test master's other build steps (forge_health, fill_disk) live beside it in fleetbake/devtools/.

Standard library only: this package (with fleetbake/__init__.py) is copied into every Linux
image as /opt/fleetbake/fleetbake/, importable there as it is here, as fleetbake.worker.
"""
