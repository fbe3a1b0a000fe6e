"""(being written) vgg."""
