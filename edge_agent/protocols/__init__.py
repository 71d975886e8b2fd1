"""How to talk to devices: one module per protocol, each behind the small interface in base.py."""
