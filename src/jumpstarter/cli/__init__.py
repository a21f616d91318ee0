"""The `jmp` and `j` command lines (click and rich are imported only here)."""
