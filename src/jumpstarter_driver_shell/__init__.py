"""Shell driver: commands configured on the exporter, callable from Python and `j`."""
