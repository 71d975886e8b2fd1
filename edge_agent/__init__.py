"""edge-agent: the on-site gateway that polls a building's meters and controllers and syncs to MQTT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edge-agent")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
