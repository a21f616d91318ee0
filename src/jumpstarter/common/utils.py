"""`serve()` / `serve_async()` (and `env()`), at the import path upstream users already write."""

from jumpstarter.exporter.local import serve, serve_async

__all__ = ["serve", "serve_async"]
