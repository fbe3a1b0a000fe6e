"""(being written) resnet."""
