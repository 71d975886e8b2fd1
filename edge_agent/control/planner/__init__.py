"""The receding-horizon planner: learn the building from its own 15-minute slots, forecast the day, and
choose the zones' temperature path that keeps the billed peak lowest at the least energy cost (an LP)."""
