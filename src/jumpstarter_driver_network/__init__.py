"""Network drivers (TCP, UDP, unix sockets on the exporter side) and port-forwarding adapters."""
