"""Write the JSON Schemas in docs/schemas/ from the pydantic models they describe.

Run after changing a model: `.venv/bin/python scripts/write_schemas.py`. The tests fail while a file on disk
differs from its model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge_agent.control.savings.schema import savings_schemas
from edge_agent.uplink.commands import command_schemas
from edge_agent.uplink.payloads import payload_schemas

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def schemas() -> dict[str, dict[str, Any]]:
    """File name in docs/schemas/ -> its schema."""
    return {**payload_schemas(), **command_schemas(), **savings_schemas()}


def main() -> None:
    SCHEMAS_DIR.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas().items():
        path = SCHEMAS_DIR / name
        path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
