"""`train`'s dispatch (training/entry.py): the toolkit for a job that names a script with its code, dogops'
training for anything else."""

import json

from training.entry import named_script, unquote

from ..conftest import run_script, script_env

SDK = {"sagemaker_program": '"train.py"', "sagemaker_submit_directory": '"s3://b/code/sourcedir.tar.gz"'}


def test_a_program_with_its_source_is_a_script_json_quoted_or_not():
    assert named_script(SDK, {}) == "train.py"
    assert named_script({"sagemaker_program": "train.py", "sagemaker_submit_directory": "s3://b/s.tar.gz"}, {}) \
        == "train.py"
    assert named_script({}, {"SAGEMAKER_PROGRAM": "main.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/code"}) == "main.py"
    assert named_script(SDK, {"SAGEMAKER_PROGRAM": "other.py"}) == "other.py"  # the environment wins


def test_a_program_without_code_is_not_a_script_unless_the_code_is_there(tmp_path):
    assert named_script({"sagemaker_program": '"train"'}, {}) is None  # the SDK's keys passed to dogops' train
    assert named_script({"sagemaker_program": '"train.py"'}, {}, tmp_path) is None
    (tmp_path / "train.py").write_text("print('baked into the image')\n")
    assert named_script({"sagemaker_program": '"train.py"'}, {}, tmp_path) == "train.py"
    assert named_script({}, {}) is None and named_script({"sagemaker_program": ""}, {}) is None


def test_unquote_takes_only_json_strings():
    assert unquote('"x"') == "x" and unquote("x") == "x" and unquote("3") == "3" and unquote('["a"]') == '["a"]'


def test_train_runs_the_named_script_through_the_toolkit(tmp_path):
    """The console script itself, on a local source directory: the toolkit's environment and arguments."""
    base = tmp_path / "ml"
    code = tmp_path / "source"
    code.mkdir()
    (code / "show.py").write_text("import json, os, sys\n"
                                  "print(f\"ARGS {json.dumps(sys.argv[1:])} {os.environ['SM_MODEL_DIR']}\")\n")
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(
        {"epochs": "2", "sagemaker_program": '"show.py"', "sagemaker_submit_directory": json.dumps(str(code))}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (config / "inputdataconfig.json").write_text("{}")
    result = run_script("train", env=script_env(SAGEMAKER_BASE_DIR=base, SM_STUDIO_LOCAL_MODE="true"), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f'ARGS ["--epochs", "2"] {base / "model"}' in result.stdout
    assert (base / "code" / "show.py").exists() and "Reporting training SUCCESS" in result.stderr
