import shutil

import pytest
from PIL import Image

from training.dataset import DatasetError, load_rgb, open_dataset
from training.features import extract_split

from ..conftest import run_script


def test_layout_errors_name_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"no train, valid, test folder.*dogImages layout"):
        open_dataset(tmp_path)
    for split in ("train", "valid", "test"):
        (tmp_path / split / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class folders like 001.Affenpinscher"):
        open_dataset(tmp_path)


def test_valid_classes_must_exist_in_train(data_dir, tmp_path):
    shutil.copytree(data_dir, tmp_path / "d")
    (tmp_path / "d" / "valid" / "133.Yorkshire_terrier").mkdir()
    with pytest.raises(DatasetError, match="not in train: 133.Yorkshire_terrier"):
        open_dataset(tmp_path / "d")


def test_corrupt_images_are_skipped_and_counted(data_dir, tmp_path):
    import torch

    shutil.copytree(data_dir, tmp_path / "d")
    folder = tmp_path / "d" / "train" / "001.Affenpinscher"
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    good = next(folder.iterdir()).read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    split = open_dataset(tmp_path / "d").splits["train"]
    result = extract_split(torch.nn.Flatten(), split, lambda im: torch.zeros(2), 64)
    assert len(result["skipped"]) == 2 and len(result["labels"]) == len(split.paths) - 2


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "I;16"])
def test_any_image_mode_becomes_rgb(mode, tmp_path):
    path = tmp_path / "x.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).convert(mode).save(path) if mode != "CMYK" else \
        Image.new("CMYK", (40, 30)).save(tmp_path / "x.jpg")
    image = load_rgb(path if mode != "CMYK" else tmp_path / "x.jpg")
    assert image.mode == "RGB" and image.size == (40, 30)


def test_exif_rotation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(tmp_path / "r.jpg").size == (20, 40)


def test_big_jpegs_decode_in_draft_mode(tmp_path):
    Image.new("RGB", (2000, 1500), (10, 200, 10)).save(tmp_path / "big.jpg")
    assert load_rgb(tmp_path / "big.jpg", target_size=224).size == (1000, 750)  # short side >= 2 * 224
    assert load_rgb(tmp_path / "big.jpg").size == (2000, 1500)


def test_cli_reports_a_bad_layout_in_one_line(tmp_path):
    result = run_script("train", "--data", tmp_path, "--model-dir", tmp_path / "m")
    assert result.returncode == 1
    assert "DatasetError" in result.stdout and "Traceback" not in result.stdout + result.stderr
