"""What moto's ECR lacks for a local push; importing this module patches it in.

moto has ECR's API but no registry: ``GetAuthorizationToken`` names a proxy endpoint on
amazonaws.com. When ``DOGOPS_REGISTRY_URL`` is set (e.g. ``http://127.0.0.1:5001``, a
Debian ``docker-registry`` on loopback, where Docker allows plain HTTP), the proxy endpoint
is that URL and every repository's ``repositoryUri`` is ``<host:port>/<name>``: what
``docker push`` sends there and what a digest URI names, so the URI dogops prints is the
image the local stack pulls. Unset, moto answers as before.
"""

import os
from urllib.parse import urlparse

from moto.ecr.models import Repository
from moto.ecr.responses import ECRResponse

_token = ECRResponse.get_authorization_token
_repository_init = Repository.__init__


def registry_url() -> str | None:
    """``DOGOPS_REGISTRY_URL`` without a trailing slash, or None."""
    url = os.environ.get("DOGOPS_REGISTRY_URL", "").rstrip("/")
    return url or None


def _get_authorization_token(self):
    result = _token(self)
    if url := registry_url():
        for data in result.result["authorizationData"]:
            data["proxyEndpoint"] = url
    return result


def _init(self, *args, **kwargs) -> None:
    _repository_init(self, *args, **kwargs)
    if url := registry_url():
        self.uri = f"{urlparse(url).netloc}/{self.name}"


ECRResponse.get_authorization_token = _get_authorization_token
Repository.__init__ = _init
