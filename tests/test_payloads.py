"""The published payload schemas match the models the uplink publishes with."""

from __future__ import annotations

import json
from pathlib import Path

from edge_agent.uplink.payloads import payload_schemas

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def test_schema_files_match_the_payload_models() -> None:
    """Regenerate with `.venv/bin/python scripts/write_schemas.py` after changing a model."""
    for name, schema in payload_schemas().items():
        on_disk = json.loads((SCHEMAS_DIR / name).read_text(encoding="utf-8"))
        assert on_disk == schema, f"docs/schemas/{name} is out of date"


def test_every_readings_field_is_required_and_nothing_else_is_allowed() -> None:
    readings = payload_schemas()["readings.json"]
    assert readings["additionalProperties"] is False
    assert set(readings["required"]) == set(readings["properties"])
