"""Firmware without a main() function."""
