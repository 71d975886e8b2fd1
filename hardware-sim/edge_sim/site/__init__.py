"""The simulated site: a central library and a city information centre, modelled on the first customer."""
