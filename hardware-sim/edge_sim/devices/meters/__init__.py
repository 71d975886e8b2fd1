"""Simulated energy meters: real models' register maps, fed from the site's electric power."""
