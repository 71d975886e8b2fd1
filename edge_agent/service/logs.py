"""structlog set-up: key-value events to stderr, console-rendered or JSON (under systemd)."""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import MutableMapping
from typing import Any

import structlog

from edge_agent.config import LogConfig


def configure_logging(config: LogConfig, capture: deque[str] | None = None) -> None:
    """Route structlog events to stderr; with `capture`, keep the rendered lines there instead
    (the demo's live screen shows them)."""
    level = getattr(logging, config.level.upper())
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if config.format == "json":
        processors.append(structlog.processors.JSONRenderer())
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=capture is None and sys.stderr.isatty()))
    if capture is not None:
        processors.append(_Capture(capture))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries' own stdlib logging: warnings and worse only, pymodbus' hex dumps never.
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    if capture is not None:
        handler = _CaptureHandler(capture)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class _Capture:
    def __init__(self, lines: deque[str]) -> None:
        self._lines = lines

    def __call__(self, _logger: Any, _name: str, rendered: str | MutableMapping[str, Any]) -> Any:
        self._lines.append(str(rendered))
        raise structlog.DropEvent


class _CaptureHandler(logging.Handler):
    def __init__(self, lines: deque[str]) -> None:
        super().__init__()
        self._lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.append(f"{record.levelname.lower()} {record.name}: {record.getMessage()}")
