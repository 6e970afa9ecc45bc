"""super-spine-kit's bootstrap agent: memory -> JSON files -> git tiering for Super Spine."""

from .lifecycle import HybridVMStorage
from .storage import HybridStorage

__all__ = ["HybridStorage", "HybridVMStorage"]
