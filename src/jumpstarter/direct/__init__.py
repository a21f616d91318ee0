"""Direct mode: an exporter served over TCP (+TLS) to one client at a time, no controller."""
