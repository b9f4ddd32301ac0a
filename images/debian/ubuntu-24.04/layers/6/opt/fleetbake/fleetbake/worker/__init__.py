# Generated from matrix.yml (row ubuntu-24.04) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""What runs inside a worker: the entrypoint (root supervisor), buildbot.tac, preflight, the
host:port parser, and the build steps the test master sends (the secret hunter, the health forger).

Standard library only: this package (with fleetbake/__init__.py) is copied into every Linux
image as /opt/fleetbake/fleetbake/, importable there as it is here, as fleetbake.worker.
"""
