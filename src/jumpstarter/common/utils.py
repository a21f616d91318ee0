"""`serve()` / `serve_async()` and `env()`, at the import paths upstream users already write."""

from jumpstarter.exporter.local import serve, serve_async
from jumpstarter.utils.env import env, env_async, env_with_metadata

__all__ = ["env", "env_async", "env_with_metadata", "serve", "serve_async"]
