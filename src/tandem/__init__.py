"""Tandem: a drop-in for DataRobot DRUM's custom-model server, on Flask or FastAPI."""

from tandem.errors import CustomHTTPError
from tandem.runtime_params import RuntimeParameters
from tandem.version import DRUM_COMPAT_VERSION, __version__

__all__ = ["CustomHTTPError", "RuntimeParameters", "DRUM_COMPAT_VERSION", "__version__"]
