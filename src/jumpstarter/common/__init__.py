"""Compatibility home of helpers users import from `jumpstarter.common`."""
