"""``datarobot_drum.custom_task_interfaces``: the base classes of DRUM's ``CustomTask`` models.

A ``custom.py`` that defines ``class CustomTask(RegressionEstimatorInterface)`` (or another of
these) is loaded with ``CustomTask.load(code_dir)`` at start-up and scored through its
``predict`` / ``predict_proba`` / ``transform`` methods (see ``tandem.core.model``).
"""

from .estimator_interfaces import (
    AnomalyEstimatorInterface,
    BinaryEstimatorInterface,
    MulticlassEstimatorInterface,
    RegressionEstimatorInterface,
)
from .transform_interface import TransformerInterface
from .user_secrets import (
    AdlsGen2OauthSecret,
    ApiTokenSecret,
    AzureSecret,
    AzureServicePrincipalSecret,
    BasicSecret,
    DatabricksAccessTokenAccountSecret,
    GCPSecret,
    OauthSecret,
    S3Secret,
    SnowflakeKeyPairUserAccountSecret,
    SnowflakeOauthUserAccountSecret,
    TableauAccessTokenSecret,
)

__all__ = [
    "AdlsGen2OauthSecret",
    "AnomalyEstimatorInterface",
    "ApiTokenSecret",
    "AzureSecret",
    "AzureServicePrincipalSecret",
    "BasicSecret",
    "BinaryEstimatorInterface",
    "DatabricksAccessTokenAccountSecret",
    "GCPSecret",
    "MulticlassEstimatorInterface",
    "OauthSecret",
    "RegressionEstimatorInterface",
    "S3Secret",
    "SnowflakeKeyPairUserAccountSecret",
    "SnowflakeOauthUserAccountSecret",
    "TableauAccessTokenSecret",
    "TransformerInterface",
]
