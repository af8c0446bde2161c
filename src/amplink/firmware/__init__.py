"""Firmware programs bundled with amplink (run inside remote core processes)."""
