import argparse

import pytest

from training import hyperparameters as hps


@pytest.mark.parametrize("raw,expected", [("True", True), ("true", True), ('"true"', True), ("1", True),
                                          ("False", False), ("false", False), ("0", False)])
def test_booleans_in_every_sdk_encoding(raw, expected):
    assert hps.from_strings({"pretrained": raw}).pretrained is expected


def test_json_quoted_and_plain_strings_and_numbers():
    hp = hps.from_strings({"backbone": '"resnet18"', "learning_rate": "1e-3", "batch_size": "64",
                           "epochs": "5.0"})
    assert (hp.backbone, hp.learning_rate, hp.batch_size, hp.epochs) == ("resnet18", 0.001, 64, 5)


def test_platform_keys_are_ignored_and_unknown_keys_are_errors():
    assert hps.from_strings({"sagemaker_region": '"us-east-1"', "_tuning_objective_metric": "test_loss"})
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        hps.from_strings({"lr": "0.1"})


@pytest.mark.parametrize("values,message", [({"batch_size": "0"}, "batch_size"), ({"pretrained": "maybe"}, "boolean"),
                                            ({"backbone": "vgg"}, "backbone"), ({"epochs": "2.5"}, "epochs"),
                                            ({"learning_rate": "-1"}, "learning_rate")])
def test_bad_values_are_clear_errors(values, message):
    with pytest.raises(ValueError, match=message):
        hps.from_strings(values)


def test_flags_use_the_same_names_and_round_trip():
    parser = argparse.ArgumentParser()
    hps.add_arguments(parser)
    hp = hps.from_namespace(parser.parse_args(["--learning_rate", "0.01", "--batch-size", "16"]))
    assert (hp.learning_rate, hp.batch_size) == (0.01, 16)
    assert hps.from_strings(hp.to_strings()) == hp
