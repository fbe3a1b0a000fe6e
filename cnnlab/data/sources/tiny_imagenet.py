"""(being written) tiny_imagenet source."""
