"""Development aids: a local Buildbot master to try a worker against, and the benchmark."""
