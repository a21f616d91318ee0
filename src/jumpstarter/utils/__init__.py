"""Helpers for scripts and tests running inside `jmp shell` (or a hook)."""
