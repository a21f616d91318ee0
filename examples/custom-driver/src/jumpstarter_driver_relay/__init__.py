"""A relay board driver: the example of a driver package (see examples/custom-driver/README.md)."""
