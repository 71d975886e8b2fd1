"""Another client with our gateway id: the broker gives it our session and drops us, and when we come back
we drop it, in turn. Seen from here as sessions the broker ends:

- MQTT 5: a DISCONNECT with reason 0x8E, "session taken over": certain, at the first one;
- MQTT 3.1.1 (or a broker that gives no reason): the connection closed without a word soon after it was
  accepted (EARLY_S: the other side's first waits below are shorter), EARLY_REPEATS times within
  EARLY_WINDOW_S: likely (a broker that drops us right after accepting us for another reason looks the same).

Once taken over, every loss is followed by a longer, jittered wait (TAKEOVER_BASE_S, doubling up to
TAKEOVER_CAP_S, at least half of it) instead of the quick reconnect that would take the session back at once;
a session that lasts STABLE_S ends it. The count and time of the last takeover go in the birth and death
certificates and in status.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from edge_agent.backoff import Backoff
from edge_agent.readings import utc_now

SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT reason code
CLOSED_WITHOUT_REASON = 0x80  # paho's reason for a connection the other end closed (no DISCONNECT)
EARLY_S = 10.0
EARLY_REPEATS = 3
EARLY_WINDOW_S = 120.0
STABLE_S = 600.0
TAKEOVER_BASE_S = 2.0
TAKEOVER_CAP_S = 300.0


class TakeoverWatch:
    """Counts the takeovers of our session and says how long to wait before the next connect."""

    def __init__(self, *, base_s: float = TAKEOVER_BASE_S, cap_s: float = TAKEOVER_CAP_S) -> None:
        self.count = 0
        self.last_at: datetime | None = None
        self._backoff = Backoff(base_s=base_s, cap_s=cap_s, floor=0.5)
        self._early: deque[float] = deque()  # when sessions ended early (monotonic seconds)
        self._since: float | None = None  # when the current session began
        self._taken_over = False

    def connected(self, at: float) -> None:
        self._since = at

    def lost(self, reason: int | None, at: float) -> str | None:
        """A session ended at `at` (monotonic), by the broker's `reason` (None: ended on our side). Returns
        why it was taken over, or None."""
        since, self._since = self._since, None
        if since is None:
            return None
        lasted = at - since
        if lasted >= STABLE_S:
            self._settle()
        why = None
        if reason == SESSION_TAKEN_OVER:
            why = "the broker said: session taken over (MQTT 5 reason 0x8E)"
        elif reason == CLOSED_WITHOUT_REASON and lasted < EARLY_S:
            self._early.append(at)
            while at - self._early[0] > EARLY_WINDOW_S:
                self._early.popleft()
            if len(self._early) >= EARLY_REPEATS:
                why = (
                    f"the broker closed the connection {len(self._early)} times within {EARLY_S:.0f} s "
                    f"of accepting it, giving no reason"
                )
        if why is not None:
            self.count += 1
            self.last_at = utc_now()
            self._taken_over = True
        return why

    def taken_over(self, at: float) -> bool:
        """Still taken over: no session since the last takeover has lasted STABLE_S."""
        if self._taken_over and self._since is not None and at - self._since >= STABLE_S:
            self._settle()
        return self._taken_over

    def next_delay(self) -> float:
        """The wait before the next connect while taken over: growing, jittered."""
        return self._backoff.next_delay()

    def _settle(self) -> None:
        self._taken_over = False
        self._backoff.reset()
        self._early.clear()
