"""The primary host application's STATE (Sparkplug 3.0): retained JSON {"online": bool, "timestamp": ms} on
spBv1.0/STATE/<host id>. The edge node publishes only while its primary host is online; a STATE older than
the newest one seen is stale (a late retained copy) and ignored."""

from __future__ import annotations

import json

import structlog

log = structlog.get_logger("edge_agent.uplink")


class PrimaryHost:
    def __init__(self, host_id: str) -> None:
        self.host_id = host_id
        self.online = False  # until its STATE says otherwise
        self._timestamp = -1

    def update(self, payload: bytes) -> bool:
        """Take one STATE message; True when it changed whether the host is online."""
        try:
            data = json.loads(payload)
            online, timestamp = data["online"], data["timestamp"]
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("primary host STATE unreadable: ignored", host=self.host_id, error=repr(exc)[:200])
            return False
        if not isinstance(online, bool) or not isinstance(timestamp, int) or isinstance(timestamp, bool):
            log.warning("primary host STATE malformed: ignored", host=self.host_id, payload=repr(data)[:200])
            return False
        if timestamp < self._timestamp:
            log.info("primary host STATE older than the last: ignored", host=self.host_id)
            return False
        self._timestamp = timestamp
        changed, self.online = online != self.online, online
        if changed:
            log.info("primary host online" if online else "primary host offline", host=self.host_id)
        return changed
