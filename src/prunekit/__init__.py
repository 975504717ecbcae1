"""prunekit: prune computer-vision networks in PyTorch, and measure what it really gains."""

from __future__ import annotations

__version__ = "0.1.0"
