"""Load shaving: the control loop's settings (and, later, features, policy, guards and actuator)."""
