"""Sparkplug B 3.0 topics: spBv1.0/<group>/<type>/<edge node>[/<device>], and the host's STATE."""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "spBv1.0"


@dataclass(frozen=True, slots=True)
class Topics:
    group: str
    node: str  # the gateway id
    primary_host: str | None = None

    def _node(self, kind: str) -> str:
        return f"{NAMESPACE}/{self.group}/{kind}/{self.node}"

    @property
    def nbirth(self) -> str:
        return self._node("NBIRTH")

    @property
    def ndeath(self) -> str:
        return self._node("NDEATH")

    @property
    def ndata(self) -> str:
        return self._node("NDATA")

    @property
    def ncmd(self) -> str:
        return self._node("NCMD")

    @property
    def dcmd_all(self) -> str:
        return f"{self._node('DCMD')}/+"

    def dbirth(self, device: str) -> str:
        return f"{self._node('DBIRTH')}/{device}"

    def ddata(self, device: str) -> str:
        return f"{self._node('DDATA')}/{device}"

    @property
    def state(self) -> str | None:
        return None if self.primary_host is None else f"{NAMESPACE}/STATE/{self.primary_host}"

    def dcmd_device(self, topic: str) -> str | None:
        """The device a DCMD topic addresses; None for any other topic."""
        prefix = f"{self._node('DCMD')}/"
        device = topic.removeprefix(prefix)
        return device if topic.startswith(prefix) and device and "/" not in device else None
