"""The controller: identities, tokens, the exporter registry and leases (distributed mode)."""
