"""AWS's PyTorch training container URIs (services/jobs/framework_images.py), against the SageMaker Python SDK's
own accounts, regions, repositories and partition domains."""

import pytest

from services.jobs.framework_images import domain, pytorch_inference, pytorch_training
from services.jobs.host_runner import serving_image


@pytest.mark.parametrize("uri, version, processor, python", [
    ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311-ubuntu20.04-sagemaker",
     "2.3.0", "cpu", "py311"),
    ("763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.5.1-gpu-py311-cu124-ubuntu22.04-sagemaker",
     "2.5.1", "gpu", "py311"),
    ("727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-training:1.13.1-gpu-py39", "1.13.1", "gpu", "py39"),
    ("442386744353.dkr.ecr.us-gov-west-1.amazonaws.com/pytorch-training:2.1-cpu-py310", "2.1", "cpu", "py310"),
    ("886529160074.dkr.ecr.us-iso-east-1.c2s.ic.gov/pytorch-training:2.0.1-cpu-py310", "2.0.1", "cpu", "py310"),
    ("094389454867.dkr.ecr.us-isob-east-1.sc2s.sgov.gov/pytorch-training:2.0.1-gpu-py310", "2.0.1", "gpu", "py310"),
    ("626614931356.dkr.ecr.af-south-1.amazonaws.com/pytorch-training:2.2.0-cpu-py310", "2.2.0", "cpu", "py310"),
    ("520713654638.dkr.ecr.us-west-2.amazonaws.com/sagemaker-pytorch:1.0.0-cpu-py3", "1.0.0", "cpu", "py3"),
    ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training@sha256:" + "a" * 64, None, None, None),
])
def test_dlc_uris_are_recognised_with_what_their_tag_says(uri, version, processor, python):
    image = pytorch_training(uri)
    assert image is not None and (image.version, image.processor, image.python) == (version, processor, python)
    assert image.uri == uri


@pytest.mark.parametrize("uri", [
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311",  # another account
    "763104351884.dkr.ecr.us-gov-west-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311",  # not its region
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3.0-cpu-py311",  # serving, not training
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.16-cpu-py310",  # another framework
    "763104351884.dkr.ecr.us-east-1.amazonaws.com.evil.example/pytorch-training:2.3.0-cpu-py311",  # another domain
    "727897471807.dkr.ecr.cn-north-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311",  # China without .cn
    "evil.example/763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311",
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training",  # no tag nor digest
    "763104351884.dkr.ecr.us-east-1.amazonaws.com/my/pytorch-training:2.3.0-cpu-py311",
    "520713654638.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311",  # legacy account, DLC repo
    "pytorch-training:2.3.0-cpu-py311", "dogops-training:dev", "",
])
def test_look_alikes_are_not(uri):
    assert pytorch_training(uri) is None


def test_partition_domains():
    assert [domain(r) for r in ("us-east-1", "cn-northwest-1", "us-iso-east-1", "us-isob-east-1",
                                "us-isof-south-1", "us-gov-east-1")] == [
        "amazonaws.com", "amazonaws.com.cn", "c2s.ic.gov", "sc2s.sgov.gov", "csp.hci.ic.gov", "amazonaws.com"]


def test_inference_containers_are_served_by_the_serving_image_and_training_ones_are_not_inference():
    inference = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
    training = inference.replace("pytorch-inference", "pytorch-training")
    assert pytorch_inference(inference).version == "2.5.1" and pytorch_training(inference) is None
    assert pytorch_inference(training) is None
    assert pytorch_inference("111122223333.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5.1-cpu-py311") is None
    assert serving_image(inference) == "dogops-serving:dev"  # AWS's images are out of reach: the local one
    own = "127.0.0.1:5001/dogops-dev/serving@sha256:" + "b" * 64
    assert serving_image(own) == own  # any other image is pulled and run as named
