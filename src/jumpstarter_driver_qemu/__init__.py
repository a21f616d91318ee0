"""QEMU virtual device: power, serial console, network forwards and a flashable disk."""
