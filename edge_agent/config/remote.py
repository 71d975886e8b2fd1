"""The `[remote]` section: how a configuration pushed over MQTT (the apply_config command) is put on trial
(edge_agent/service/config_rollout.py). These settings of the running file, not the pushed one's, judge a
push: a pushed file cannot give itself a longer trial."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from edge_agent.config.base import Strict


class RemoteConfig(Strict):
    health_timeout_s: Annotated[float, Field(ge=2, le=3600)] = 300.0
    """A pushed configuration must reach health within this many seconds of each start, else the last good
    one is put back and the agent restarts on it."""
    max_starts: Annotated[int, Field(ge=1, le=20)] = 3
    """A pushed configuration under which the agent died this many times before reaching health (killed,
    crashed: a crash loop) is rolled back at the next start."""
    devices_up: Literal["all", "any"] = "all"
    """Health: every configured device answered at least once ("all"), or one of them ("any"); and the
    uplink connected to the broker."""
