"""(being written) spec."""
