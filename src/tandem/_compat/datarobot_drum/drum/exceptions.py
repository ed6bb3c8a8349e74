"""DRUM's exception names, as models import them (``datarobot_drum.drum.exceptions``)."""

from tandem.errors import BaseCustomUserError, CustomHTTPError


class DrumException(Exception):
    """Base of DRUM's own exceptions."""


class DrumCommonException(DrumException):
    """A general DRUM failure."""


class DrumSchemaValidationException(DrumException):
    """The model's input or output does not match its declared schema."""


class DrumSerializationError(DrumException):
    """A custom task could not be saved or loaded."""


class DrumTransformException(DrumException):
    """A transform task failed."""


__all__ = [
    "BaseCustomUserError",
    "CustomHTTPError",
    "DrumCommonException",
    "DrumException",
    "DrumSchemaValidationException",
    "DrumSerializationError",
    "DrumTransformException",
]
