"""`dogops data upload` against moto's real S3 server on loopback."""

from ..conftest import run_script, s3_client


def test_upload_skips_unchanged_files_and_resends_changed_ones(s3_env, data_dir, tmp_path):
    s3 = s3_client(s3_env)
    s3.create_bucket(Bucket="dogops-data")
    local = tmp_path / "data"
    import shutil

    shutil.copytree(data_dir, local)
    (local / "big.bin").write_bytes(b"x" * (9 << 20))  # multipart: its ETag has a part count

    first = run_script("dogops", "data", "upload", local, "s3://dogops-data/dogImages", env=s3_env, check=True)
    total = sum(1 for p in local.rglob("*") if p.is_file())
    assert f"{total} uploaded" in first.stderr
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="dogops-data")
            for o in page.get("Contents", [])]
    assert len(keys) == total and "dogImages/train/001.Affenpinscher/Affenpinscher_00001.jpg" in keys

    changed = local / "train" / "001.Affenpinscher" / "Affenpinscher_00001.jpg"
    changed.write_bytes(changed.read_bytes() + b"\0")
    second = run_script("dogops", "data", "upload", local, "s3://dogops-data/dogImages", env=s3_env, check=True)
    assert "1 uploaded" in second.stderr and f"{total - 1} unchanged" in second.stderr
    body = s3.get_object(Bucket="dogops-data", Key="dogImages/train/001.Affenpinscher/Affenpinscher_00001.jpg")
    assert body["Body"].read() == changed.read_bytes()


def test_upload_errors_are_clear(s3_env, data_dir):
    missing = run_script("dogops", "data", "upload", data_dir, "s3://no-such-bucket/x", env=s3_env)
    assert missing.returncode == 1 and "NoSuchBucket" in missing.stderr and "Traceback" not in missing.stderr
    bad_uri = run_script("dogops", "data", "upload", data_dir, "bucket/x", env=s3_env)
    assert bad_uri.returncode == 1 and "not an s3://BUCKET/PREFIX URI" in bad_uri.stderr
