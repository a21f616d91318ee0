"""Serial ports (any pyserial URL) as byte streams: console, pexpect and pipe access."""
