"""Demand response: a utility's OpenADR 2.0b events turned into demand targets for their window.

VTN ──events──▶ ven.py (openleadr) ──▶ signals.py (targets) ──▶ schedule.py ──▶ ControlSettings
VTN ◀──optIn/optOut, 15-minute demand and reduction reports──┘
"""
