"""`j ssh`: the local OpenSSH client reaching the device's SSH server through a network driver."""
