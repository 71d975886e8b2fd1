"""The JSON Schema of the daily savings report on `{prefix}/{gateway}/savings` (docs/schemas/savings.json)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from edge_agent.control.savings.tracker import DailySavings

SCHEMA_FILE = "savings.json"


def savings_schemas() -> dict[str, dict[str, Any]]:
    """docs/schemas/ file name -> JSON Schema (draft 2020-12) of the report DailySavings.to_json writes."""
    schema = TypeAdapter(DailySavings).json_schema(mode="serialization")
    return {
        SCHEMA_FILE: {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            **schema,
            "title": "edge-agent daily savings report",
            "description": "One day's savings against the baseline and their uncertainty (docs/savings.md)",
        }
    }
