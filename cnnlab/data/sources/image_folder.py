"""(being written) image_folder source."""
