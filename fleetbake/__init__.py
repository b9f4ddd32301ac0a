"""fleetbake: bake, test and ship worker images for the CPython buildbot fleet."""

__version__ = "0.1.0"
