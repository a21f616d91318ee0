"""Exporter side: the session that serves a driver tree, its status machine, logs and servers."""
