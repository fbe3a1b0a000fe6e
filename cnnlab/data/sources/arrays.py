"""(being written) arrays source."""
