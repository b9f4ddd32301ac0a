# Generated from matrix.yml (row debian-12) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""fleetbake: bake, test and ship worker images for the CPython buildbot fleet."""

__version__ = "0.1.0"
