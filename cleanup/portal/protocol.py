"""Numbers the portal's REST protocol fixes, in one place for every layer that obeys them."""

from __future__ import annotations

MAX_BATCH = 50  # the portal runs the first 50 commands of a batch and refuses the rest

__all__ = ["MAX_BATCH"]
