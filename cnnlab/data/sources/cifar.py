"""(being written) cifar source."""
