"""Byte-stream plumbing: frames on RouterService.Stream, resources, compression."""
