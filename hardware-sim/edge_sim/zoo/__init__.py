"""A zoo of buildings for the simulator: generated per seed from documented distributions (ZOO.md), with
held-out seeds that tuning never sees, and the study that runs each through the shipped control core."""
