"""Every augmentation op, registered in OPS by importing its module (one module per family)."""

from cnnlab.augment import color, filters, geometry, mix  # noqa: F401
from cnnlab.augment.registry import OPS

__all__ = ["OPS"]
