"""Building physics: thermal zones, HVAC equipment, weather."""
