"""The shared model.tar.gz pieces (``training.archive``): the reproducible packer, what the extractor unpacks and
every hostile archive it refuses."""

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from training import archive


def _tar(path, *members: tarfile.TarInfo):
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def _member(name: str, size: int = 1, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


def test_plain_files_and_folders_are_extracted(tmp_path):
    into = archive.extract(_tar(tmp_path / "m.tar.gz", _member("./code", kind=tarfile.DIRTYPE),
                                _member("./code/inference.py"), _member("model.pth", 3)), tmp_path / "out")
    assert sorted(p.relative_to(into).as_posix() for p in into.rglob("*")) == ["code", "code/inference.py",
                                                                               "model.pth"]
    assert (into / "model.pth").read_bytes() == b"xxx"


@pytest.mark.parametrize("member, reason", [
    (_member("../escape"), "would land outside"),
    (_member("/tmp/escape"), "would land outside"),
    (_member("a/../../escape"), "would land outside"),
    (_member("model.pth", kind=tarfile.SYMTYPE, link="/etc/shadow"), "is a link"),
    (_member("model.pth", kind=tarfile.SYMTYPE, link="inside.txt"), "is a link"),
    (_member("model.pth", kind=tarfile.LNKTYPE, link="/etc/passwd"), "is a link"),
    (_member("fifo", kind=tarfile.FIFOTYPE), "special file"),
    (_member("dev", kind=tarfile.CHRTYPE), "special file"),
])
def test_unsafe_members_are_refused_and_nothing_is_extracted(tmp_path, member, reason):
    path = _tar(tmp_path / "m.tar.gz", _member("ok.txt"), member)
    with pytest.raises(archive.ArchiveError, match=reason):
        archive.extract(path, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == [] and not (tmp_path / "escape").exists()


def test_size_and_member_caps(tmp_path):
    path = _tar(tmp_path / "m.tar.gz", _member("a", 600), _member("b", 600))
    with pytest.raises(archive.ArchiveError, match="1,200 bytes uncompressed, more than the 1,000 allowed"):
        archive.extract(path, tmp_path / "out", max_bytes=1000)
    with pytest.raises(archive.ArchiveError, match="more than 1 members"):
        archive.extract(path, tmp_path / "out", max_members=1)
    assert archive.extract(path, tmp_path / "out", max_bytes=1200, max_members=2) == tmp_path / "out"


def test_not_a_tar_is_an_archive_error(tmp_path):
    (tmp_path / "plain.tar.gz").write_bytes(b"not gzip")
    for call in (archive.read_members, lambda p: archive.extract(p, tmp_path / "out")):
        with pytest.raises(archive.ArchiveError, match="not a gzip-compressed tar"):
            call(tmp_path / "plain.tar.gz")
    good = _tar(tmp_path / "m.tar.gz", _member("model.pth", 64))
    (tmp_path / "cut.tar.gz").write_bytes(good.read_bytes()[:20])
    with pytest.raises(archive.ArchiveError, match="not a gzip-compressed tar"):
        archive.extract(tmp_path / "cut.tar.gz", tmp_path / "out")


def test_without_tarfile_data_filter_the_own_checks_still_hold(tmp_path, monkeypatch):
    """Python 3.11.0-3.11.3: no ``tarfile.data_filter`` and ``extractall`` takes no ``filter``."""
    monkeypatch.delattr(tarfile, "data_filter")
    original = tarfile.TarFile.extractall

    def old_extractall(self, path=".", members=None, *, numeric_owner=False):
        return original(self, path, members, numeric_owner=numeric_owner, filter="fully_trusted")

    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    assert (archive.extract(_tar(tmp_path / "good.tar.gz", _member("model.pth")), tmp_path / "good")
            / "model.pth").exists()
    link = _tar(tmp_path / "link.tar.gz", _member("model.pth", kind=tarfile.SYMTYPE, link="/etc/shadow"))
    with pytest.raises(archive.ArchiveError, match="is a link"):
        archive.extract(link, tmp_path / "link")
    escape = _tar(tmp_path / "escape.tar.gz", _member("../escape"))
    with pytest.raises(archive.ArchiveError, match="would land outside"):
        archive.extract(escape, tmp_path / "model")
    assert not (tmp_path / "escape").exists()


def test_the_packer_gives_the_same_bytes_for_the_same_files_and_the_extractor_reads_them_back(tmp_path):
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "model.pth").write_bytes(b"weights")
    (model / "code" / "inference.py").write_text("def model_fn(d): ...\n")
    first = archive.pack(model, tmp_path / "1.tar.gz").read_bytes()
    (model / "model.pth").touch()  # a new mtime only
    assert archive.pack(model, tmp_path / "2.tar.gz").read_bytes() == first
    with tarfile.open(tmp_path / "2.tar.gz") as tar:
        assert {(m.name, m.mtime, m.uname) for m in tar} == {("code", 0, ""), ("code/inference.py", 0, ""),
                                                             ("model.pth", 0, "")}
    into = archive.extract(tmp_path / "2.tar.gz", tmp_path / "out")
    assert (into / "code" / "inference.py").read_text() == "def model_fn(d): ...\n"
    (model / "model.pth").write_bytes(b"retrained")
    assert archive.pack(model, tmp_path / "3.tar.gz").read_bytes() != first


def test_s3_uris_split_into_bucket_and_prefix():
    assert archive.parse_s3_uri("s3://bucket/some/prefix/") == ("bucket", "some/prefix")
    assert archive.parse_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="not an s3://"):
        archive.parse_s3_uri("https://bucket/x")


def test_the_packer_runs_as_a_command_for_hosts_without_the_package(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.pth").write_bytes(b"weights")
    result = subprocess.run([sys.executable, "-m", "training.archive", "pack", "model", "model.tar.gz"],
                            cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(archive.__file__).parents[1])})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.tar.gz").read_bytes() == archive.pack(tmp_path / "model", tmp_path / "x.tar.gz").read_bytes()
    assert archive.main(["unpack", "a", "b"]) == 2
