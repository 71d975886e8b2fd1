"""Which broker the uplink tries next ([mqtt] urls), and how long it waits first.

Each loss or refused connect moves on to the next broker, in turn. Every attempt after a loss is preceded by
a full-jitter wait (FIRST_WAIT_S, doubling at each refused connect up to LONGEST_WAIT_S; reset once a session
is up), between the brokers of a round as between rounds: a connect to a dead node or over a cut link fails at
once (client.py), so the waits alone pace a gateway. Sized for a fleet that loses its links at once: the
first attempts spread evenly over FIRST_WAIT_S (a tenth of the fleet in any second), and the later ones,
further apart, add little to that; a long outage settles at about one attempt per gateway every 15 s. What it
costs one gateway after a blip: 5 s on average (10 s at most) before its data flows again; and a broker back
from an outage has every gateway within LONGEST_WAIT_S. FIRST_WAIT_S stays within takeover.EARLY_S.
"""

from __future__ import annotations

import random

import structlog

from edge_agent.backoff import Backoff
from edge_agent.config.agent import MqttBroker

log = structlog.get_logger("edge_agent.uplink")

FIRST_WAIT_S = 10.0  # the first wait after a loss is drawn from [0, 10 s]
LONGEST_WAIT_S = 30.0  # the ceiling doubles at each refused connect (20 s), up to this


class BrokerRotation:
    def __init__(self, brokers: list[MqttBroker], *, rng: random.Random | None = None) -> None:
        if not brokers:
            raise ValueError("no broker to connect to")
        self._brokers = brokers
        self._index = 0
        self._last_session: MqttBroker | None = None  # where the last session was
        self._backoff = Backoff(base_s=FIRST_WAIT_S, cap_s=LONGEST_WAIT_S, _rng=rng or random.Random())

    @property
    def current(self) -> MqttBroker:
        return self._brokers[self._index]

    @property
    def count(self) -> int:
        return len(self._brokers)

    def connected(self) -> None:
        """A session began on the current broker. The log says when it is not the broker of the last
        session."""
        if self._last_session is not None and self._last_session != self.current:
            log.warning("uplink switched broker", previous=str(self._last_session), broker=str(self.current))
        self._last_session = self.current

    def settled(self) -> None:
        """The session is up and announced: the next loss waits within FIRST_WAIT_S again."""
        self._backoff.reset()

    def lost(self) -> None:
        """The session on the current broker ended: the next broker is tried first."""
        self._advance("lost")

    def refused(self) -> None:
        """A connect to the current broker failed: the next one is tried."""
        self._advance("cannot connect")

    def next_wait(self) -> float:
        """The jittered wait before the next attempt: below FIRST_WAIT_S after a loss, twice that after a
        refused connect, and so on, up to LONGEST_WAIT_S."""
        return self._backoff.next_delay()

    def _advance(self, why: str) -> None:
        if len(self._brokers) == 1:
            return
        previous = self.current
        self._index = (self._index + 1) % len(self._brokers)
        log.info("uplink tries the next broker", previous=str(previous), why=why, broker=str(self.current))
