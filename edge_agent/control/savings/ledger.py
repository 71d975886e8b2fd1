"""The savings ledger: every closed day's report, one JSON line each, kept on the gateway's disk.

It is the local record the carbon platform's figures can be checked against, and after a restart the last
RECENT reports are sent again (the platform keeps one report per gateway and day; the latest wins), so a
report queued while the broker was down is not lost with the agent's memory. A write that fails (disk full)
is logged and the report still goes upstream.
"""

from __future__ import annotations

import os
from collections import deque
from pathlib import Path

import structlog

log = structlog.get_logger("edge_agent.control.savings")

RECENT = 7
SAVINGS_LEDGER = "savings.jsonl"  # the ledger's name, next to the buffer file


class SavingsLedger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, report: bytes) -> None:
        try:
            with self.path.open("ab") as ledger:
                ledger.write(report + b"\n")
                ledger.flush()
                os.fsync(ledger.fileno())
        except OSError as error:
            log.error("savings ledger not written", ledger=str(self.path), error=str(error))  # noqa: TRY400

    def recent(self, count: int = RECENT) -> list[bytes]:
        """The last `count` reports, oldest first; none when the ledger cannot be read."""
        try:
            with self.path.open("rb") as ledger:
                return [line.rstrip(b"\n") for line in deque(ledger, maxlen=count) if line.strip()]
        except FileNotFoundError:
            return []
        except OSError as error:
            log.error("savings ledger not read", ledger=str(self.path), error=str(error))  # noqa: TRY400
            return []
