"""The fitted building model (`[control] building_model`), loaded once at start and named in the birth
message and in status. A file that cannot be used is refused with the reason in the log and in status;
the agent runs on without it (nothing uses the model yet but the planner to come)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from edge_agent.config import AgentConfig
from edge_agent.control.building_model.file import BuildingModelRef, load_building_model
from edge_agent.errors import ModelError
from edge_agent.service.control_setup import agent_control_setup

log = structlog.get_logger("edge_agent.service")


@dataclass(frozen=True, slots=True)
class BuildingModelStatus:
    path: str
    loaded: BuildingModelRef | None  # file name, sha256 and fit date of the model in use
    refused: str | None  # why the configured file is not used


def load_configured_building_model(config: AgentConfig) -> BuildingModelStatus | None:
    path = config.control.building_model
    if path is None:
        return None
    setup = agent_control_setup(config)
    try:
        model = load_building_model(path, setup.points.zones, setup.points.outdoor_temperature)
    except ModelError as error:
        log.error("building model refused", building_model=error.path, reason=error.reason)  # noqa: TRY400
        return BuildingModelStatus(str(path), None, error.reason)
    ref = model.ref
    log.info("building model loaded", building_model=str(path), sha256=ref.sha256, fitted_at=ref.fitted_at)
    return BuildingModelStatus(str(path), ref, None)
