"""Composite driver: groups child drivers under one name (`client.board.power`)."""
