"""Tandem's ``datarobot_drum``: the names DRUM models import, for environments without DRUM.

Served only when DataRobot's ``datarobot-drum`` is not installed (see ``_tandem_drum``);
``from datarobot_drum import RuntimeParameters, CustomHTTPError`` resolves to Tandem's versions.
"""

from tandem.errors import BaseCustomUserError, CustomHTTPError
from tandem.runtime_params import RuntimeParameters

__all__ = ["BaseCustomUserError", "CustomHTTPError", "RuntimeParameters"]
