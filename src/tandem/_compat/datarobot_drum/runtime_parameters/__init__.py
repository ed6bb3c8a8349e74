"""``datarobot_drum.runtime_parameters``: DRUM's home of ``RuntimeParameters``."""

from tandem.runtime_params import RuntimeParameters

__all__ = ["RuntimeParameters"]
