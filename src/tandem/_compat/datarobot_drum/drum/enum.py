"""The constants of ``datarobot_drum.drum.enum`` that model code uses, with DRUM 1.18.1's values.

``TargetType`` is Tandem's own: it is what the ``score`` hook receives as ``target_type``, so
``target_type == TargetType.BINARY`` holds in a model as it does on DRUM.
"""

from tandem.core.model import TargetType

LOGGER_NAME_PREFIX = "drum"
PRED_COLUMN = "Predictions"
CUSTOM_FILE_NAME = "custom"
FLASK_EXT_FILE_NAME = "custom_flask"
CUSTOM_PY_CLASS_NAME = "CustomTask"
POSITIVE_CLASS_LABEL_ARG_KEYWORD = "positive_class_label"
NEGATIVE_CLASS_LABEL_ARG_KEYWORD = "negative_class_label"
CLASS_LABELS_ARG_KEYWORD = "class_labels"
TARGET_TYPE_ARG_KEYWORD = "target_type"
RESPONSE_PREDICTIONS_KEY = "predictions"
MODEL_CONFIG_FILENAME = "model-metadata.yaml"
URL_PREFIX_ENV_VAR_NAME = "URL_PREFIX"


class CustomHooks:
    """Names of the ``custom.py`` hooks."""

    INIT = "init"
    READ_INPUT_DATA = "read_input_data"
    LOAD_MODEL = "load_model"
    TRANSFORM = "transform"
    SCORE = "score"
    SCORE_UNSTRUCTURED = "score_unstructured"
    POST_PROCESS = "post_process"
    FIT = "fit"
    CHAT = "chat"
    GET_SUPPORTED_LLM_MODELS_LIST = "get_supported_llm_models"

    ALL_PREDICT_STRUCTURED = [INIT, READ_INPUT_DATA, LOAD_MODEL, TRANSFORM, SCORE, POST_PROCESS]
    ALL_PREDICT_UNSTRUCTURED = [INIT, LOAD_MODEL, SCORE_UNSTRUCTURED]
    ALL_PREDICT_FIT_CHAT_STRUCTURED = [
        *ALL_PREDICT_STRUCTURED,
        FIT,
        CHAT,
        GET_SUPPORTED_LLM_MODELS_LIST,
    ]


class UnstructuredDtoKeys:
    """Keys of the keyword arguments ``score_unstructured`` receives."""

    DATA = "data"
    QUERY = "query"
    HEADERS = "headers"
    MIMETYPE = "mimetype"
    CHARSET = "charset"


class StructuredDtoKeys:
    """Keys of the keyword arguments the structured hooks receive."""

    BINARY_DATA = "binary_data"
    MIMETYPE = "mimetype"
    TARGET_BINARY_DATA = "target_binary_data"
    TARGET_MIMETYPE = "target_mimetype"
    SPARSE_COLNAMES = "sparse_colnames"
    PARAMETERS = "parameters"


class PredictionServerMimetypes:
    """Content types the prediction server reads and writes."""

    APPLICATION_JSON = "application/json"
    APPLICATION_OCTET_STREAM = "application/octet-stream"
    TEXT_PLAIN = "text/plain"
    TEXT_MTX = "text/mtx"
    TEXT_CSV = "text/csv"
    EMPTY = ""


class InputFormatExtension:
    """File extensions of the input formats."""

    MTX = ".mtx"
    CSV = ".csv"


class ModelInfoKeys:
    """Keys of ``/info/``."""

    CODE_DIR = "codeDir"
    TARGET_TYPE = "targetType"
    PREDICTOR = "predictor"
    LANGUAGE = "language"
    DRUM_VERSION = "drumVersion"
    DRUM_SERVER = "drumServer"
    MODEL_METADATA = "modelMetadata"
    POSITIVE_CLASS_LABEL = "positiveClassLabel"
    NEGATIVE_CLASS_LABEL = "negativeClassLabel"
    CLASS_LABELS = "classLabels"

    REQUIRED = [CODE_DIR, TARGET_TYPE, LANGUAGE, DRUM_VERSION, DRUM_SERVER]


__all__ = [
    "CUSTOM_FILE_NAME",
    "CUSTOM_PY_CLASS_NAME",
    "CustomHooks",
    "InputFormatExtension",
    "LOGGER_NAME_PREFIX",
    "ModelInfoKeys",
    "PRED_COLUMN",
    "PredictionServerMimetypes",
    "StructuredDtoKeys",
    "TargetType",
    "UnstructuredDtoKeys",
]
