"""Sparkplug B 3.0 uplink ([mqtt] format = "sparkplug"): the gateway as edge node, each field device as a
Sparkplug device. docs/mqtt.md, "Sparkplug B", is the contract."""
