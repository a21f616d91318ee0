"""Power drivers: the power interface, mock supplies and HTTP-controlled PDUs / smart plugs."""
