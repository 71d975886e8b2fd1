"""Remote configuration: the apply_config command puts a new configuration file on trial, and the agent puts
the last good one back by itself when the new one does not reach health in time. Files: rollout_state.py.

1. apply_config: the TOML text is checked as `edge-agent config check` checks a file, and refused with the
   same messages; it must keep the gateway's id and buffer. The running file is copied to last-good, the
   trial recorded, the new text renamed over the file; the reply goes out with an `applied` event, then the
   agent stops in order and the process executes itself again (same pid and arguments: systemd sees a reload).
2. Each start on trial counts itself, uncounted by an orderly stop: the start after [remote] max_starts
   uncounted ones (killed, crashed: a crash loop) puts the last good file back before loading anything.
3. On trial, health is looked at every half second: the devices answered ([remote] devices_up) and the uplink
   connected. Healthy within [remote] health_timeout_s of the start: the push is good (event `healthy`). Not:
   the last good file is put back and the agent restarts on it (event `rolled-back`, saying why). A start on
   trial that fails where the process sees it (the file refused, a startup error, a crash) rolls back at once.
The [remote] settings that judge a push are those of the file it replaced, kept in the trial.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, JsonValue

from edge_agent.atomic_file import write_atomically
from edge_agent.config import AgentConfig, check_text
from edge_agent.config.load import Checked
from edge_agent.errors import CommandRefused, ConfigError
from edge_agent.readings import utc_now
from edge_agent.service.rollout_state import (
    Notice,
    RolloutFiles,
    RolloutState,
    Trial,
    sha256_hex,
)
from edge_agent.uplink.commands import ApplyConfigArgs, CommandErrorCode
from edge_agent.uplink.payloads import ConfigInfo

log = structlog.get_logger("edge_agent.config_rollout")

PUSHED_SOURCE = "args.config"  # how a pushed file is named in its problems' heading
RESTART_DELAY_S = 1.0  # after an apply_config: time for its reply to leave before the orderly stop
HEALTH_CHECK_S = 0.5


@dataclass(frozen=True, slots=True)
class Health:
    """What a trial is judged on, as the running agent sees it."""

    devices: dict[str, str | None]  # device -> None once it answered, else why not (its last error)
    connected: bool  # the uplink connected to the broker at least once


class ConfigEvent(BaseModel):
    """A rollout step on {prefix}/{gateway}/events (docs/mqtt.md, "Configuration events")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gateway: str
    kind: Literal["config"] = "config"
    step: Literal["applied", "healthy", "rolled-back", "not-rolled-back"]
    at: datetime
    message: str
    version: str | None
    sha256: str
    reason: str | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def unhealthy(health: Health, devices_up: Literal["all", "any"]) -> str | None:
    """Why `health` is not yet health (None: it is)."""
    reasons = []
    silent = {name: why for name, why in health.devices.items() if why is not None}
    if silent and (devices_up == "all" or len(silent) == len(health.devices)):
        named = "; ".join(  # a device's error names it already ("main-meter 10.0.0.5:502 unit 1 : ...")
            why if why.startswith(name) else f"{name}: {why}" for name, why in list(silent.items())[:5]
        )
        more = f" and {len(silent) - 5} more" if len(silent) > 5 else ""
        reasons.append(f"{len(silent)} of {len(health.devices)} devices never answered ({named}{more})")
    if not health.connected:
        reasons.append("the uplink never connected to the broker")
    return "; ".join(reasons) or None


class ConfigRollout:
    """The running configuration file's rollout: its hash and version, and its trial when it was pushed."""

    def __init__(self, files: RolloutFiles, sha256: str | None, state: RolloutState) -> None:
        self._files = files
        self._sha256 = sha256  # of the file as this process found it at start (None: unreadable)
        self._state = state
        self._config: AgentConfig | None = None
        self._stop: asyncio.Event | None = None
        self._send: Callable[[bytes], None] | None = None
        self._announce: Callable[[ConfigInfo | None], None] = lambda _info: None
        self.restart_wanted = False

    # --- at start, before the file is loaded -------------------------------------------------------

    @classmethod
    def at_start(cls, path: Path | None) -> ConfigRollout | None:
        """The rollout of the file at `path` (None: the built-in configuration has none). A start on trial is
        counted; past the trial's max_starts, the last good file is put back here."""
        if path is None:
            return None
        files = RolloutFiles(path)
        state, problem = files.read_state()
        try:
            sha256: str | None = sha256_hex(path.read_bytes())
        except OSError:
            sha256 = None  # loading it says why
        rollout = cls(files, sha256, state)
        if problem is not None:
            rollout._notice("not-rolled-back", "the rollout state was unreadable: started afresh", problem)
        trial = state.trial
        if trial is None:
            return rollout
        if sha256 != trial.sha256:  # edited on site, or a push or rollback cut short: the file wins
            version = trial.last_good_version if sha256 == trial.last_good_sha256 else None
            rollout._save_logged(RolloutState(sha256=sha256, version=version, notices=state.notices))
            reason = f"the file is not the one pushed as {trial.version} (changed on site, or cut short)"
            rollout._notice("not-rolled-back", f"trial of {trial.version} ended", reason)
            return rollout
        trial = trial.model_copy(update={"starts": trial.starts + 1})
        rollout._save_logged(state.model_copy(update={"trial": trial}))
        if trial.starts > trial.max_starts:
            reason = (
                f"the agent ended {trial.starts - 1} times under it before reaching health "
                f"(max_starts = {trial.max_starts}: a crash loop)"
            )
            rollout._roll_back(reason)
        return rollout

    # --- what the agent shows -------------------------------------------------------------------------

    def info(self) -> ConfigInfo | None:
        """The birth's `config`: the running file's hash, and the version a push named for it."""
        if self._sha256 is None:
            return None
        trial, state = self._state.trial, self._state
        if trial is not None and trial.sha256 == self._sha256:
            return ConfigInfo(sha256=self._sha256, version=trial.version)
        version = state.version if state.sha256 == self._sha256 else None
        return ConfigInfo(sha256=self._sha256, version=version)

    # --- while the agent runs ---------------------------------------------------------------------------

    async def run(
        self,
        config: AgentConfig,
        stop: asyncio.Event,
        send_event: Callable[[bytes], None],
        health: Callable[[], Health],
        announce: Callable[[ConfigInfo | None], None] = lambda _info: None,
    ) -> None:
        """Publish what earlier runs left to say, then judge the trial (if any); ends with it or at `stop`.
        `announce`: a new birth, for a version named without a restart."""
        self._config, self._stop, self._send, self._announce = config, stop, send_event, announce
        self._publish_notices()
        trial = self._state.trial
        if trial is None:
            return
        log.info("configuration on trial", version=trial.version, health_timeout_s=trial.health_timeout_s)
        deadline = asyncio.get_running_loop().time() + trial.health_timeout_s
        while not stop.is_set():
            why = unhealthy(health(), trial.devices_up)
            if why is None:
                self._healthy(trial)
                return
            if asyncio.get_running_loop().time() >= deadline:
                reason = f"not healthy within {trial.health_timeout_s:g} s: {why}"
                if await asyncio.to_thread(self._roll_back, reason):  # its event: said by the next start
                    self._restart(0.0)
                else:
                    self._publish_notices()
                return
            await asyncio.sleep(HEALTH_CHECK_S)

    async def apply(self, args: ApplyConfigArgs) -> dict[str, JsonValue]:
        """apply_config (commands.ConfigPush): refused with CommandRefused, or on its way to a restart."""
        running, trial = self._config, self._state.trial
        if running is None or self._stop is None or self._stop.is_set():
            raise CommandRefused(CommandErrorCode.BUSY, "the agent is starting or stopping: send it later")
        if not running.commands.trusted_keys:
            message = "apply_config takes signed commands only: set [commands] trusted_keys on the gateway"
            raise CommandRefused(CommandErrorCode.UNSIGNED, message)
        if trial is not None or self.restart_wanted:
            on = f"{trial.version} is on trial" if trial is not None else "the agent is restarting"
            raise CommandRefused(CommandErrorCode.BUSY, f"{on}: send it again once its outcome is published")
        checked = _checked(args.config, running)
        data = args.config.encode()
        sha256 = sha256_hex(data)
        result: dict[str, JsonValue] = {
            "version": args.version,
            "sha256": sha256,
            "previous_sha256": self._sha256,
            "warnings": [warning.text() for warning in checked.warnings],
        }
        if sha256 == self._sha256:  # the file already runs: its version recorded, nothing restarted
            named = self._state.model_copy(update={"sha256": sha256, "version": args.version})
            await asyncio.to_thread(self._save, named)
            self._announce(self.info())
            return {**result, "restart": False}
        try:
            await asyncio.to_thread(self._write_push, args.version, data, sha256, running)
        except OSError as exc:
            log.error("configuration not applied", version=args.version, error=str(exc))  # noqa: TRY400
            message = f"not applied, nothing changed: {exc} (docs/operations.md: remote configuration)"
            raise CommandRefused(CommandErrorCode.NOT_APPLIED, message) from None
        message = f"configuration {args.version} applied: restarting on it, on trial"
        self._notice("applied", message, None, version=args.version, sha256=sha256)
        self._publish_notices()
        self._restart(RESTART_DELAY_S)
        return {**result, "restart": True, "health_timeout_s": running.remote.health_timeout_s}

    # --- after the agent ended --------------------------------------------------------------------------

    def stopped(self) -> None:
        """After an orderly stop: the restart an apply or a rollback asked for (never returns then); else
        the start is uncounted."""
        if self.restart_wanted:
            self._reexec()
        trial = self._state.trial
        if trial is not None and trial.starts > 0:
            uncounted = trial.model_copy(update={"starts": trial.starts - 1})
            self._save_logged(self._state.model_copy(update={"trial": uncounted}))

    def failed_start(self, reason: str) -> None:
        """A start that ended in failure: on trial, the last good file is put back and the agent executes
        itself again on it (never returns); otherwise nothing."""
        if self._state.trial is not None and self._roll_back(f"the agent could not run on it: {reason}"):
            self._reexec()

    def signalled(self) -> None:
        """SIGTERM or Ctrl-C: the process ends after its orderly stop, whatever restart was coming (a pushed
        file or a rollback is in place already: the next start runs it)."""
        self.restart_wanted = False

    # --- the steps --------------------------------------------------------------------------------------

    def _write_push(self, version: str, data: bytes, sha256: str, running: AgentConfig) -> None:
        """Last good, trial, new file: in this order, so that a cut anywhere leaves a file that ran or the
        pushed one with its trial recorded."""
        current = self._files.config.read_bytes()
        write_atomically(self._files.last_good, current)
        trial = Trial(
            version=version,
            sha256=sha256,
            last_good_sha256=sha256_hex(current),
            last_good_version=self._state.version if self._state.sha256 == sha256_hex(current) else None,
            health_timeout_s=running.remote.health_timeout_s,
            max_starts=running.remote.max_starts,
            devices_up=running.remote.devices_up,
        )
        self._save(self._state.model_copy(update={"trial": trial}))
        try:
            write_atomically(self._files.config, data)
        except OSError:
            self._save(self._state.model_copy(update={"trial": None}))
            raise
        log.info("configuration applied", version=version, sha256=sha256, file=str(self._files.config))

    def _healthy(self, trial: Trial) -> None:
        good = RolloutState(sha256=trial.sha256, version=trial.version, notices=self._state.notices)
        self._save_logged(good)
        message = f"configuration {trial.version} is healthy: kept"
        self._notice("healthy", message, None, version=trial.version, sha256=trial.sha256)
        self._publish_notices()

    def _roll_back(self, reason: str) -> bool:
        """The last good file back in place of the trial's, and the state to match (no restart here); False
        when there was none to put back (the trial ends all the same)."""
        trial = self._state.trial
        assert trial is not None
        try:
            previous = self._files.last_good.read_bytes()
            write_atomically(self._files.config, previous)
        except OSError as exc:  # nothing to go back to: the pushed file stays, its trial ends
            log.critical("configuration not rolled back", version=trial.version, why=reason, error=str(exc))
            self._save_logged(self._state.model_copy(update={"trial": None}))
            message = f"configuration {trial.version} failed its trial and could not be rolled back"
            self._notice("not-rolled-back", message, f"{reason}; {exc}")
            return False
        self._sha256 = sha256_hex(previous)
        version = trial.last_good_version if self._sha256 == trial.last_good_sha256 else None
        log.error("configuration rolled back", version=trial.version, to=version, reason=reason)
        self._save_logged(RolloutState(sha256=self._sha256, version=version, notices=self._state.notices))
        message = f"configuration {trial.version} rolled back to {version or 'the last good file'}"
        self._notice("rolled-back", message, reason, version=version, sha256=self._sha256)
        return True

    def _restart(self, delay_s: float) -> None:
        """An orderly stop in `delay_s`, after which `stopped` executes the process again."""
        self.restart_wanted = True
        stop = self._stop
        if stop is not None:
            asyncio.get_running_loop().call_later(delay_s, stop.set)

    def _reexec(self) -> None:
        arguments = [sys.executable, *sys.orig_argv[1:]]
        log.info("restarting", argv=arguments)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, arguments)

    # --- the state and the events -----------------------------------------------------------------------

    def _notice(
        self,
        step: Literal["applied", "healthy", "rolled-back", "not-rolled-back"],
        message: str,
        reason: str | None,
        *,
        version: str | None = None,
        sha256: str | None = None,
    ) -> None:
        """Keep an event to publish (persisted: a restart may come first)."""
        notice = Notice(
            step=step,
            message=message,
            version=version,
            sha256=sha256 or self._sha256 or "",
            at=utc_now().astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            reason=reason,
        )
        self._save_logged(self._state.model_copy(update={"notices": (*self._state.notices, notice)}))

    def _publish_notices(self) -> None:
        """The kept events onto the uplink's queue, and out of the state."""
        if self._send is None or self._config is None or not self._state.notices:
            return
        for notice in self._state.notices:
            event = ConfigEvent(gateway=self._config.gateway.id, **notice.model_dump())
            log.info("configuration event", step=event.step, message=event.message, reason=event.reason)
            self._send(event.to_json())
        self._save_logged(self._state.model_copy(update={"notices": ()}))

    def _save(self, state: RolloutState) -> None:
        self._state = state
        self._files.write_state(state)

    def _save_logged(self, state: RolloutState) -> None:
        """The state kept in memory, and on disk unless the disk refuses (logged)."""
        try:
            self._save(state)
        except OSError as exc:
            self._state = state
            log.error("rollout state not written", file=str(self._files.state), error=str(exc))  # noqa: TRY400


def _checked(text: str, running: AgentConfig) -> Checked:
    """The pushed text checked as `config check` does, and kept to this gateway and its buffer."""
    try:
        checked = check_text(text, PUSHED_SOURCE)
    except ConfigError as error:
        count = len(error.problems)
        heading = f"{error.source}: configuration is not valid ({count} problem{'s' * (count != 1)})"
        message = "\n".join([heading, *(f"  {problem}" for problem in error.problems)])
        raise CommandRefused(CommandErrorCode.INVALID, message, PUSHED_SOURCE) from None
    new = checked.config
    if new.gateway.id != running.gateway.id:
        message = f"gateway.id: {new.gateway.id!r} is not this gateway's {running.gateway.id!r}"
        raise CommandRefused(CommandErrorCode.INVALID, message, PUSHED_SOURCE)
    if new.buffer.resolved_path() != running.buffer.resolved_path():
        message = (
            f"buffer.path: {str(new.buffer.path)!r} would leave the buffer and the holds journal behind "
            f"({running.buffer.resolved_path()}): move them on site"
        )
        raise CommandRefused(CommandErrorCode.INVALID, message, PUSHED_SOURCE)
    return checked
