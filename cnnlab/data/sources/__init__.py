"""One module per on-disk format; importing this package registers them all."""

from cnnlab.data.sources import (  # noqa: F401
    arrays,
    cifar,
    digits,
    idx,
    image_folder,
    tiny_imagenet,
)
