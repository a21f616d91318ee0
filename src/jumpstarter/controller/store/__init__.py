"""Where the controller keeps its state: the `Store` seam and its implementations."""

from jumpstarter.controller.store.base import SigningKey, Store

__all__ = ["SigningKey", "Store"]
