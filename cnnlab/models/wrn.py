"""(being written) wrn."""
