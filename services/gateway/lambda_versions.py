"""Which version an invocation runs: a version or ``$LATEST`` as named; an alias, the version it points to or, with
a routing configuration (``AdditionalVersionWeights``), one of its additional versions drawn by weight, as Lambda
routes each invocation. Aliases are read from the emulator (``GetAlias``), reused ``CONFIG_SECONDS`` as
configurations are.
"""

import random
from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError

from .emulator import Recent, client
from .lambda_runtime import CONFIG_SECONDS, ServiceError

_aliases = Recent(CONFIG_SECONDS)


def is_alias(qualifier: str | None) -> bool:
    return bool(qualifier) and qualifier != "$LATEST" and not qualifier.isdigit()


def _alias(name: str, alias: str) -> tuple[str, dict[str, float]] | None:
    """The alias's version and additional version weights; None when there is no such alias."""
    try:
        found = client("lambda").get_alias(FunctionName=name, Name=alias)
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            return None
        raise ServiceError(500, "ServiceException", f"GetAlias on the emulator failed: {e}") from None
    except BotoCoreError as e:
        raise ServiceError(500, "ServiceException", f"the emulator is unreachable: {e}") from None
    weights = (found.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    return found["FunctionVersion"], {version: float(weight) for version, weight in weights.items()}


def version(name: str, qualifier: str | None, draw: Callable[[], float] = random.random) -> str | None:
    """The qualifier this invocation runs: ``qualifier`` itself unless it is an alias (an unknown alias too:
    ``describe`` answers its 404)."""
    if not is_alias(qualifier):
        return qualifier
    alias = _aliases.get((name, qualifier), lambda: _alias(name, qualifier))
    if alias is None:
        return qualifier
    primary, weights = alias
    point = draw()
    for candidate, weight in sorted(weights.items()):
        if point < weight:
            return candidate
        point -= weight
    return primary
