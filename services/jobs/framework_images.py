"""AWS's PyTorch training (and inference) containers recognised by their image URI.

A Deep Learning Container (DLC) URI is ``<account>.dkr.ecr.<region>.<domain>/<repository>:<tag>`` (or
``@sha256:<digest>``), where the account is the one AWS publishes the repository from in that region. The
accounts, regions and repository names are those of the SageMaker Python SDK's
``image_uri_config/pytorch.json`` (its ``training`` section: ``pytorch-training`` for the DLCs,
``sagemaker-pytorch`` for the framework images before them; ``pytorch-inference`` from the same accounts for
serving) and the domains those of its
``common_utils`` (``amazonaws.com.cn`` in China, the ISO partitions' own). A look-alike (another account, a
region that account does not serve, another repository or domain) is not one.
"""

import dataclasses
import re

_DLC_ACCOUNTS = {  # pytorch-training: account -> regions
    "763104351884": ("ap-northeast-1", "ap-northeast-2", "ap-south-1", "ap-southeast-1", "ap-southeast-2",
                     "ca-central-1", "eu-central-1", "eu-north-1", "eu-west-1", "eu-west-2", "eu-west-3",
                     "sa-east-1", "us-east-1", "us-east-2", "us-west-1", "us-west-2"),
    "626614931356": ("af-south-1",), "871362719292": ("ap-east-1",), "975050140332": ("ap-east-2",),
    "364406365360": ("ap-northeast-3",), "772153158452": ("ap-south-2",), "907027046896": ("ap-southeast-3",),
    "457447274322": ("ap-southeast-4",), "550225433462": ("ap-southeast-5",), "633930458069": ("ap-southeast-6",),
    "590183813437": ("ap-southeast-7",), "204538143572": ("ca-west-1",), "727897471807": ("cn-north-1", "cn-northwest-1"),
    "380420809688": ("eu-central-2",), "692866216735": ("eu-south-1",), "503227376785": ("eu-south-2",),
    "780543022126": ("il-central-1",), "914824155844": ("me-central-1",), "217643126080": ("me-south-1",),
    "637423239942": ("mx-central-1",), "446045086412": ("us-gov-east-1",), "442386744353": ("us-gov-west-1",),
    "886529160074": ("us-iso-east-1",), "094389454867": ("us-isob-east-1",), "303241398832": ("us-isof-east-1",),
    "454834333376": ("us-isof-south-1",),
}
_LEGACY_ACCOUNTS = {  # sagemaker-pytorch (PyTorch 0.4 to 1.1): account -> regions
    "520713654638": _DLC_ACCOUNTS["763104351884"],
    "313743910680": ("af-south-1",), "057415533634": ("ap-east-1",), "422961961927": ("cn-north-1",),
    "423003514399": ("cn-northwest-1",), "048378556238": ("eu-south-1",), "724002660598": ("me-south-1",),
    "246785580436": ("us-gov-west-1",), "744548109606": ("us-iso-east-1",), "453391408702": ("us-isob-east-1",),
}
_REGISTRIES = {"pytorch-training": _DLC_ACCOUNTS, "sagemaker-pytorch": _LEGACY_ACCOUNTS}
_INFERENCE_REGISTRIES = {"pytorch-inference": _DLC_ACCOUNTS, "sagemaker-pytorch": _LEGACY_ACCOUNTS}
_DOMAINS = {"cn-": "amazonaws.com.cn", "us-iso-": "c2s.ic.gov", "us-isob-": "sc2s.sgov.gov",
            "us-isof-": "csp.hci.ic.gov"}
_URI = re.compile(r"(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)\.(?P<domain>[a-z0-9.]+)/"
                  r"(?P<repository>[a-z0-9-]+)(?::(?P<tag>[\w.-]+)|@sha256:[0-9a-f]{64})")
_TAG = re.compile(r"(?P<version>\d+(?:\.\d+)*)-(?P<processor>cpu|gpu)(?:-(?P<python>py\d+))?(?:-.*)?")


@dataclasses.dataclass(frozen=True)
class FrameworkImage:
    """A PyTorch training container: where it is published and what its tag says (None: a digest)."""

    uri: str
    account: str
    region: str
    repository: str
    version: str | None = None  # the PyTorch version the tag names
    processor: str | None = None  # cpu or gpu
    python: str | None = None  # py3, py311, ...


def domain(region: str) -> str:
    """The partition's domain of ``region``'s ECR endpoint."""
    return next((d for prefix, d in sorted(_DOMAINS.items(), key=lambda kv: -len(kv[0]))
                 if region.startswith(prefix)), "amazonaws.com")


def pytorch_training(uri: str) -> FrameworkImage | None:
    """``uri`` as AWS's PyTorch training container, or None when it is not one."""
    return _framework(uri, _REGISTRIES)


def pytorch_inference(uri: str) -> FrameworkImage | None:
    """``uri`` as AWS's PyTorch inference container (what the SDK's ``PyTorchModel`` serves on), or None."""
    return _framework(uri, _INFERENCE_REGISTRIES)


def _framework(uri: str, registries: dict) -> FrameworkImage | None:
    match = _URI.fullmatch(uri.strip())
    if match is None:
        return None
    account, region, repository = match["account"], match["region"], match["repository"]
    if match["domain"] != domain(region) or region not in registries.get(repository, {}).get(account, ()):
        return None
    tag = _TAG.fullmatch(match["tag"] or "")
    return FrameworkImage(uri, account, region, repository, *(tag.group("version", "processor", "python")
                                                               if tag else (None, None, None)))
