"""One module per on-disk format; importing this package registers them all."""

from cnnlab.data.sources import digits  # noqa: F401
