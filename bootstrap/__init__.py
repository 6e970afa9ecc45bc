"""super-spine-kit's bootstrap agent: memory -> JSON files -> git tiering for Super Spine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .lifecycle import HybridVMStorage
    from .storage import HybridStorage

__all__ = ["HybridStorage", "HybridVMStorage"]


def __getattr__(name: str) -> Any:
    """Lazy exports: `spine-agent get` should not pay for importing GitPython."""
    if name == "HybridVMStorage":
        from .lifecycle import HybridVMStorage

        return HybridVMStorage
    if name == "HybridStorage":
        from .storage import HybridStorage

        return HybridStorage
    raise AttributeError(name)
