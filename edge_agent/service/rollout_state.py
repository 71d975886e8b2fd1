"""The files of a remote configuration rollout, beside the configuration file (`agent.toml`):

    agent.toml.last-good   the file that ran before the latest push: what a rollback puts back
    agent.toml.rollout     JSON: the version central named for the running file, the push on trial (if
                           any), and the rollout's events not yet published (a rollback's, across its restart)

Every write goes to a temporary file beside the target, is flushed to disk and renamed over it, and the
directory is flushed: a power cut leaves the old file or the new one, never half of either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from edge_agent.atomic_file import write_atomically

LAST_GOOD_SUFFIX = ".last-good"
STATE_SUFFIX = ".rollout"


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Trial(_Record):
    """A pushed file on trial, and how it is judged (the [remote] settings of the file it replaced)."""

    version: str
    sha256: str
    last_good_sha256: str
    last_good_version: str | None
    health_timeout_s: float
    max_starts: int
    devices_up: Literal["all", "any"]
    starts: int = 0
    """Starts under it that did not end in an orderly stop (this one included, once counted)."""


class Notice(_Record):
    """A rollout event for the events topic, kept until the agent is connected to say it."""

    step: Literal["applied", "healthy", "rolled-back", "not-rolled-back"]
    message: str
    version: str | None
    sha256: str
    at: str
    reason: str | None = None


class RolloutState(_Record):
    sha256: str | None = None
    """The file `version` belongs to: when the running file has another hash, it was edited on site."""
    version: str | None = None
    trial: Trial | None = None
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True, slots=True)
class RolloutFiles:
    config: Path

    @property
    def last_good(self) -> Path:
        return self.config.with_name(self.config.name + LAST_GOOD_SUFFIX)

    @property
    def state(self) -> Path:
        return self.config.with_name(self.config.name + STATE_SUFFIX)

    def read_state(self) -> tuple[RolloutState, str | None]:
        """The recorded state, and why it was unreadable (an empty state then); no file: empty, no problem."""
        try:
            return RolloutState.model_validate_json(self.state.read_bytes()), None
        except FileNotFoundError:
            return RolloutState(), None
        except (OSError, ValidationError) as exc:
            return RolloutState(), f"{self.state}: unreadable, ignored ({exc})"

    def write_state(self, state: RolloutState) -> None:
        write_atomically(self.state, state.model_dump_json(indent=1).encode() + b"\n")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
