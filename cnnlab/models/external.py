"""(being written) external."""
