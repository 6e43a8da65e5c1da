"""SageMaker's list actions page as AWS's do: ``MaxResults`` defaults to 10 (moto gives 100, or everything), with a
``NextToken`` while more are left, so code that lists without a paginator misses the same items locally as on
AWS. Importing this module patches moto; :func:`page` pages the lists the emulator answers itself."""

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import PAGINATION_MODEL
from moto.sagemaker.responses import SageMakerResponse

DEFAULT_MAX_RESULTS = 10  # ListEndpoints, ListEndpointConfigs, ListModels, ListTrainingJobs, ListHyperParameterTuningJobs...


def page(items: list, key: str, max_results: int | None, token: str | None) -> dict:
    """One page of ``items`` under ``key``: ``MaxResults`` (1-100, default 10) from ``NextToken`` on, and a
    ``NextToken`` while more are left."""
    size = DEFAULT_MAX_RESULTS if max_results is None else int(max_results)
    if not 1 <= size <= 100:
        raise ValidationError(f"1 validation error detected: Value '{size}' at 'maxResults' failed to satisfy "
                              "constraint: Member must have value less than or equal to 100")
    try:
        start = int(token or 0)
    except ValueError:
        raise ValidationError("Invalid pagination token because of the token is not valid.") from None
    answer = {key: items[start:start + size]}
    if start + size < len(items):
        answer["NextToken"] = str(start + size)
    return answer


def _list_models(self) -> ActionResult:
    """moto lists every model at once, whatever ``NameContains`` asks; AWS the models whose name contains it,
    newest first, a page at a time."""
    part = self._get_param("NameContains") or ""
    models = sorted((m for m in self.sagemaker_backend.list_models() if part in m.model_name),
                    key=lambda m: m.creation_time, reverse=True)
    return ActionResult(page([m.response_object for m in models], "Models", self._get_param("MaxResults"),
                             self._get_param("NextToken")))


def _list_training_jobs(self) -> ActionResult:
    if self._get_param("MaxResults") is None:
        self.params["MaxResults"] = DEFAULT_MAX_RESULTS
    return _moto_list_training_jobs(self)


for _action in ("list_endpoints", "list_endpoint_configs", "list_hyper_parameter_tuning_jobs"):
    PAGINATION_MODEL[_action]["limit_default"] = DEFAULT_MAX_RESULTS
_moto_list_training_jobs = SageMakerResponse.list_training_jobs
SageMakerResponse.list_training_jobs = _list_training_jobs
SageMakerResponse.list_models = _list_models
