"""The simulated controllers' own sequences: what a good BMS does when the agent writes nothing.

The baseline follows ASHRAE Guideline 36 in spirit: occupancy schedules with optimal-start lead and setback,
zone PI loops driving VAV airflow and reheat, trim-and-respond resets of the supply-air temperature and the
duct static pressure, minimum ventilation per ASHRAE 62.1, and Korean public-building setpoints.
"""
