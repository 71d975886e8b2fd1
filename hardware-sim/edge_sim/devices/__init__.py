"""Simulated field devices, each behind a real protocol server on loopback."""
