"""The SageMaker training contract: where ``/opt/ml`` puts things.

As in the SageMaker training toolkit, the root is ``/opt/ml`` unless
``SAGEMAKER_BASE_DIR`` says otherwise, and the ``SM_*`` variables the toolkit
exports (``SM_CHANNEL_TRAINING``, ``SM_MODEL_DIR``, ``SM_HOSTS``,
``SM_CURRENT_HOST``) win over the files when set.
"""

import dataclasses
import json
import os
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Hosts:
    """The hosts of a (possibly multi-instance) job, sorted as SageMaker sorts them."""

    hosts: tuple[str, ...] = ("algo-1",)
    current: str = "algo-1"

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current)

    @property
    def world_size(self) -> int:
        return len(self.hosts)


@dataclasses.dataclass(frozen=True)
class SageMakerPaths:
    """Paths of one training job under the ``/opt/ml`` root."""

    base: Path

    @classmethod
    def from_env(cls) -> "SageMakerPaths":
        return cls(Path(os.environ.get("SAGEMAKER_BASE_DIR", "/opt/ml")))

    @property
    def config_dir(self) -> Path:
        return self.base / "input" / "config"

    def channel(self, name: str) -> Path:
        """A channel's folder; ``SM_CHANNEL_<NAME>`` wins when set."""
        return Path(os.environ.get(f"SM_CHANNEL_{name.upper()}", self.base / "input" / "data" / name))

    @property
    def model_dir(self) -> Path:
        return Path(os.environ.get("SM_MODEL_DIR", self.base / "model"))

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base / "checkpoints"

    def hyperparameters(self) -> dict[str, str]:
        """``hyperparameters.json``, or ``{}`` when the job has none."""
        path = self.config_dir / "hyperparameters.json"
        if not path.exists():
            return {}
        values = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a JSON object")
        return values

    def hosts(self) -> Hosts:
        """Hosts from ``SM_HOSTS``/``SM_CURRENT_HOST``, else ``resourceconfig.json``, else one host."""
        return hosts_from_env(self.config_dir / "resourceconfig.json")


def hosts_from_env(resource_config: Path | None = None) -> Hosts:
    """The job's hosts from the environment or a ``resourceconfig.json``."""
    if os.environ.get("SM_HOSTS"):
        hosts = tuple(sorted(json.loads(os.environ["SM_HOSTS"])))
        current = os.environ.get("SM_CURRENT_HOST", hosts[0])
    elif resource_config is not None and resource_config.exists():
        config = json.loads(resource_config.read_text(encoding="utf-8"))
        hosts = tuple(sorted(config["hosts"]))
        current = config["current_host"]
    else:
        return Hosts()
    if current not in hosts:
        raise ValueError(f"current host {current!r} is not among the job's hosts {list(hosts)}")
    return Hosts(hosts, current)


def resource_config(current: str, hosts: list[str], instance_type: str) -> dict:
    """``resourceconfig.json`` as SageMaker writes it for ``current`` among ``hosts`` (one homogeneous group)."""
    return {"current_host": current, "hosts": list(hosts), "network_interface_name": "eth0",
            "current_instance_type": instance_type, "current_group_name": "homogeneousCluster",
            "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": instance_type,
                                 "hosts": list(hosts)}]}


def write_job_config(base: Path, hyperparameters: dict, input_data_config: dict, resources: dict) -> Path:
    """``input/config/{hyperparameters,inputdataconfig,resourceconfig}.json`` under ``base``, as SageMaker
    writes them before it starts ``train``; the folder."""
    config = SageMakerPaths(Path(base)).config_dir
    config.mkdir(parents=True, exist_ok=True)
    for name, content in (("hyperparameters", hyperparameters), ("inputdataconfig", input_data_config),
                          ("resourceconfig", resources)):
        (config / f"{name}.json").write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return config
