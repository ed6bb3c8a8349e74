"""Compatibility shim so DRUM models run unchanged without DataRobot's package installed.

``from datarobot_drum import RuntimeParameters, CustomHTTPError`` resolves to Tandem's versions.
"""

from tandem.errors import BaseCustomUserError, CustomHTTPError
from tandem.runtime_params import RuntimeParameters

__all__ = ["BaseCustomUserError", "CustomHTTPError", "RuntimeParameters"]
