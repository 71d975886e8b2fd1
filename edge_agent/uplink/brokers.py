"""Which broker the uplink tries next ([mqtt] urls): each in turn, moving on at every loss or refused connect.

A round is one try of every broker since the last session; the uplink waits its jittered backoff only
between rounds (and before the first try after a loss), so a fleet cut at once spreads its reconnects, and a
dead node costs one failed connect, not a wait.
"""

from __future__ import annotations

import structlog

from edge_agent.config.agent import MqttBroker

log = structlog.get_logger("edge_agent.uplink")


class BrokerRotation:
    def __init__(self, brokers: list[MqttBroker]) -> None:
        if not brokers:
            raise ValueError("no broker to connect to")
        self._brokers = brokers
        self._index = 0
        self._failed_in_round = 0
        self._last_session: MqttBroker | None = None  # where the last session was

    @property
    def current(self) -> MqttBroker:
        return self._brokers[self._index]

    @property
    def count(self) -> int:
        return len(self._brokers)

    def connected(self) -> None:
        """A session began on the current broker: a new round starts at its loss. The log says when it is
        not the broker of the last session."""
        self._failed_in_round = 0
        if self._last_session is not None and self._last_session != self.current:
            log.warning("uplink switched broker", previous=str(self._last_session), broker=str(self.current))
        self._last_session = self.current

    def lost(self) -> None:
        """The session on the current broker ended: the next broker is tried first."""
        self._failed_in_round = 0
        self._advance("lost")

    def refused(self) -> bool:
        """A connect to the current broker failed: move on; True when every broker failed in this round
        (time to back off)."""
        self._failed_in_round += 1
        self._advance("cannot connect")
        round_over = self._failed_in_round >= len(self._brokers)
        if round_over:
            self._failed_in_round = 0
        return round_over

    def _advance(self, why: str) -> None:
        if len(self._brokers) == 1:
            return
        previous = self.current
        self._index = (self._index + 1) % len(self._brokers)
        log.info("uplink tries the next broker", previous=str(previous), why=why, broker=str(self.current))
