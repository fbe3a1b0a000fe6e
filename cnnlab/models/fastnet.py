"""(being written) fastnet."""
