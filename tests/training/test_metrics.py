"""Metric lines read back as SageMaker reads them (``training.metrics.MetricReader``): the one parser of the
stack's training jobs, the local tuner and EC2 training."""

from training.metrics import MetricReader, format_metrics, metric_definitions, parse_metrics


def test_the_training_codes_own_lines_read_back_exactly():
    line = format_metrics("epoch=3", train_loss=0.25, valid_loss=0.5, valid_accuracy=0.75)
    found = parse_metrics(line)
    assert {k: found[k] for k in ("train_loss", "valid_loss", "valid_accuracy")} == {
        "train_loss": 0.25, "valid_loss": 0.5, "valid_accuracy": 0.75}
    assert {d["Name"] for d in metric_definitions()} >= set(found)


def test_a_users_definitions_take_the_first_group_as_a_number_and_skip_what_is_not_one():
    reader = MetricReader([{"Name": "loss", "Regex": r"loss: ([0-9.eE+-]+)"},
                           {"Name": "acc", "Regex": r"acc=(\S+)"},
                           {"Name": "nogroup", "Regex": r"loss"}])
    assert reader.read("epoch 1 loss: 1.5e-2 acc=n/a") == {"loss": 0.015}
    assert reader.read("acc=0.9") == {"acc": 0.9}
    assert reader.read("nothing here") == {}


def test_a_job_with_no_definitions_reads_nothing_and_none_means_the_training_codes_own():
    line = format_metrics("epoch=1", valid_loss=0.5)
    assert parse_metrics(line, []) == {}
    assert parse_metrics(line)["valid_loss"] == 0.5
