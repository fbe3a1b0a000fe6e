"""(being written) idx source."""
