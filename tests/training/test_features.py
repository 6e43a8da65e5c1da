"""The feature cache read ahead into memory, as a warm worker does before forking trials."""

import os

import torch

from training.features import dataset_features, preload


def test_preloaded_features_serve_only_the_very_file_they_were_read_from(tmp_path):
    def save(value: float) -> None:  # as dataset_features writes the cache: a new file put in place
        torch.save({"train": {"features": torch.full((2, 3), value)}}, tmp_path / "new.tmp")
        os.replace(tmp_path / "new.tmp", tmp_path / "key.pt")

    def read() -> dict:  # a cache hit needs neither data nor backbone
        return dataset_features(None, None, None, 64, "key", tmp_path)

    save(1.0)
    assert read() is not read()  # each read loads the file
    preload(tmp_path)
    assert read() is read() and torch.equal(read()["train"]["features"], torch.ones(2, 3))  # from memory
    save(2.0)
    assert read() is not read() and torch.equal(read()["train"]["features"], torch.full((2, 3), 2.0))
