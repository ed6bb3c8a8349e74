"""``datarobot_drum.drum.common``: the logger helper DRUM's templates use."""

import logging

from datarobot_drum.drum.enum import LOGGER_NAME_PREFIX


def get_drum_logger(logger_name: str) -> logging.Logger:
    """A logger named ``drum.<logger_name>``, as DRUM names its loggers."""
    return logging.getLogger(".".join([LOGGER_NAME_PREFIX, logger_name]))


__all__ = ["get_drum_logger"]
