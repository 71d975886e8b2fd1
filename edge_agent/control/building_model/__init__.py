"""The building learnt on site (issue 18, Build 1): per zone a grey-box temperature model and the
building's non-HVAC base-load profile, fitted from commissioning data, judged on held-out days and stored
as a versioned JSON file (docs/building_model.md). The planner that uses it comes later."""
