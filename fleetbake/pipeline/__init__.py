"""The image pipeline: matrix -> render (Dockerfiles, Packer) -> base -> build -> verify -> publish."""
