"""One row per attack, and the table the bench prints."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Row:
    attack: str
    cases: int = 0
    lost: int = 0  # readings a receiver following docs/mqtt.md never gets (gaps, seqs reused by new readings)
    duplicated: int = 0  # the same reading received again (allowed by at-least-once; not a failure)
    wrong_writes: int = 0  # outside limits, executed twice, or left behind after a crash (device-side)
    crashes: int = 0  # the agent exiting or restarting without being asked
    recovery_s: list[float | None] = field(default_factory=list)  # per case; None: never recovered
    notes: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)  # acceptance missed in ways no column shows

    def note(self, text: str) -> None:
        self.notes.append(text)

    def miss(self, text: str) -> None:
        """An acceptance item missed (shown first in the notes, marked FAIL)."""
        self.misses.append(text)

    @property
    def failed(self) -> bool:
        return bool(self.lost or self.wrong_writes or self.crashes or self.misses) or None in self.recovery_s

    def recovery(self) -> str:
        if not self.recovery_s:
            return "-"
        if None in self.recovery_s:
            return f"never ({self.recovery_s.count(None)} of {len(self.recovery_s)})"
        return f"{max(t for t in self.recovery_s if t is not None):.1f} s max"


HEADER = ("attack", "cases", "lost", "duplicated", "wrong writes", "crashes", "recovery time", "notes")


def markdown(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = (
            r.attack, str(r.cases), f"{r.lost:,}", f"{r.duplicated:,}", str(r.wrong_writes), str(r.crashes),
            r.recovery(), "; ".join([*(f"FAIL: {m}" for m in r.misses), *r.notes]),
        )  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
