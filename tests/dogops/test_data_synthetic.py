import hashlib

from training.breeds import BREEDS
from training.dataset import open_dataset

from ..conftest import run_script


def _digest(root):
    return hashlib.sha256(b"".join(p.relative_to(root).as_posix().encode() + p.read_bytes()
                                   for p in sorted(root.rglob("*")) if p.is_file())).hexdigest()


def test_layout_uses_the_real_breed_names(tmp_path):
    run_script("dogops", "data", "synthetic", "--out", tmp_path, "--classes", "133", "--per-class", "1",
               "--size", "32", check=True)
    dataset = open_dataset(tmp_path)
    assert dataset.classes[0] == "001.Affenpinscher" and dataset.classes[-1] == "133.Yorkshire_terrier"
    assert [c.split(".", 1)[1] for c in dataset.classes] == list(BREEDS)
    assert {len(s.paths) for s in dataset.splits.values()} == {133, 266}
    assert all(p.suffix == ".jpg" for p in dataset.splits["test"].paths)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run_script("dogops", "data", "synthetic", "--out", tmp_path / name, "--classes", "3", "--per-class", "4",
                   "--size", "48", "--seed", seed, check=True)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_bad_arguments_are_one_clear_line(tmp_path):
    result = run_script("dogops", "data", "synthetic", "--out", tmp_path, "--classes", "200")
    assert result.returncode == 1 and "classes must be between 1 and 133" in result.stderr
    assert "Traceback" not in result.stderr
