"""Simulated BACnet/IP controllers: each its own device on its own UDP port."""
