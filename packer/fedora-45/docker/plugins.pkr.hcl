# Generated from matrix.yml (row fedora-45) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
packer {
  required_plugins = {
    docker = {
      source  = "github.com/hashicorp/docker",
      version = ">= 1.0.0",
    },
    amazon = {
      source  = "github.com/hashicorp/amazon",
      version = ">= 1.3.0",
    },
  }
}
