"""What the buffer must never forget, kept beside its file so that losing the file cannot take it along:
the highest sequence number ever issued, the session number (bdSeq) and the readings dropped unsent.

A buffer file that is emptied, replaced or loses the tail of its write-ahead log (SQLite silently ignores
WAL frames whose checksum fails) would otherwise hand out sequence numbers again, which receivers discard
as duplicates. Two small files sit next to the buffer:

- `<buffer>.seq`, the ledger: JSON {reserved, bd_seq, dropped, last_dropped_seq}, padded to a fixed size,
  replaced atomically (write, fsync, rename); on a disk too full for the new copy, overwritten in place
  (its blocks are already there), so a count of dropped readings is kept even then. `reserved` is a
  ceiling on every sequence number issued; it moves up RESERVE_BLOCK numbers at a time, so the ledger
  costs one flush per block of readings, not one per commit.
- `<buffer>.mark`: "issued depth", overwritten in place after each commit and never flushed: exact after
  the process crashes (the kernel has it), possibly stale after a power cut (the ceiling then serves).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("edge_agent.buffer")

RESERVE_BLOCK = 100_000  # sequence numbers reserved per ledger flush
_MARK_WIDTH = 48  # the mark is rewritten in place at a fixed size: one write, no allocation
_LEDGER_WIDTH = 256  # the ledger's size: an overwrite in place needs no new block


@dataclass(slots=True)
class LedgerValues:
    reserved: int = 0  # every sequence number issued is at or below this
    bd_seq: int = 0  # the last uplink session number
    dropped: int = 0  # readings deleted unsent (buffer cap, disk full, lost with a damaged file)
    last_dropped_seq: int = 0  # the newest of them


@dataclass(frozen=True, slots=True)
class Mark:
    issued: int  # the last sequence number committed
    depth: int  # readings then waiting in the buffer


def ledger_paths(buffer: Path) -> tuple[Path, Path]:
    return Path(f"{buffer}.seq"), Path(f"{buffer}.mark")


class Ledger:
    """The buffer's sidecar files. Not thread-safe: the buffer's worker thread alone uses it."""

    def __init__(self, buffer: Path) -> None:
        self.path, self.mark_path = ledger_paths(buffer)
        self.values = LedgerValues()
        self.found = False  # a ledger was there when loaded
        self.mark: Mark | None = None  # the mark found when loaded, if it could be read
        self.unsaved = False  # the last save failed (a full disk): saved again at the next chance
        self._mark_fd: int | None = None

    def load(self) -> None:
        """Read both files; a missing or unreadable one is reported by `found` and `mark`."""
        try:
            raw = json.loads(self.path.read_text())
            self.values = LedgerValues(**{k: int(raw.get(k, 0)) for k in asdict(LedgerValues())})
            self.found = True
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.error(  # noqa: TRY400 - the message and the error say it
                "buffer ledger unreadable: continuing from the buffer file",
                ledger=str(self.path),
                error=str(exc),
            )
        try:
            issued, depth = (int(part) for part in self.mark_path.read_text().split())
            self.mark = Mark(issued, depth)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("buffer mark unreadable", mark=str(self.mark_path), error=str(exc))

    def save(self) -> bool:
        """Replace the ledger atomically; False (and `unsaved`) when the disk refuses: kept in memory."""
        temporary = self.path.with_name(f"{self.path.name}.tmp")
        text = json.dumps(asdict(self.values)).ljust(_LEDGER_WIDTH - 1) + "\n"
        try:
            with open(temporary, "w") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            temporary.replace(self.path)
            _sync_directory(self.path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            if self._overwrite(text):
                return True
            if not self.unsaved:
                log.error(  # noqa: TRY400 - the message and the error say it
                    "buffer ledger not saved: kept in memory, saved again later",
                    ledger=str(self.path),
                    error=str(exc),
                )
            self.unsaved = True
            return False
        if self.unsaved:
            log.info("buffer ledger saved again", ledger=str(self.path))
        self.unsaved = False
        return True

    def _overwrite(self, text: str) -> bool:
        """The ledger rewritten in place (a full disk): no new block, but a power cut in the middle could
        tear it (the buffer file's meta table and the mark then serve). True when written and flushed."""
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except OSError:
            return False
        try:
            os.pwrite(fd, text.encode(), 0)
            os.fsync(fd)
        except OSError:
            return False
        finally:
            os.close(fd)
        if self.unsaved:
            log.info("buffer ledger saved again (in place)", ledger=str(self.path))
        self.unsaved = False
        return True

    def reserve(self, up_to: int) -> None:
        """Make sure the ceiling covers `up_to` (a flush only once per RESERVE_BLOCK numbers)."""
        if up_to > self.values.reserved:
            self.values.reserved = up_to + RESERVE_BLOCK
            self.save()

    def write_mark(self, issued: int, depth: int) -> None:
        """The exact position after a commit: one in-place write, no flush."""
        try:
            if self._mark_fd is None:
                self._mark_fd = os.open(self.mark_path, os.O_RDWR | os.O_CREAT, 0o644)
            os.pwrite(self._mark_fd, f"{issued} {depth}".ljust(_MARK_WIDTH - 1).encode() + b"\n", 0)
        except OSError as exc:  # the ledger's ceiling still holds
            log.warning("buffer mark not written", mark=str(self.mark_path), error=str(exc))

    def close(self) -> None:
        if self._mark_fd is not None:
            os.close(self._mark_fd)
            self._mark_fd = None


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
