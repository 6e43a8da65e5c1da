"""``train``, the training image's entry: the user's script when the job names one, else dogops' own training.

Both dogops and AWS's SageMaker training toolkit (``sagemaker-training``, the framework containers' own)
install a ``train`` console script; dogops' is installed last and decides here. Under the SageMaker contract
(no arguments, or ``train`` as SageMaker passes it), a job that names a program with its code
(:func:`named_script`: ``sagemaker_program`` and ``sagemaker_submit_directory`` in ``hyperparameters.json``, or
``SAGEMAKER_PROGRAM`` in the environment) runs the toolkit's trainer, exactly as
the PyTorch framework container on AWS does (its trainer calling :func:`framework`): source from ``sagemaker_submit_directory`` in ``code/``,
``requirements.txt`` installed, the ``SM_*`` environment, hyperparameters as ``--name value``, a failure's
reason in ``output/failure``. Anything else is dogops' ``train`` (:mod:`training.train`), as it always was.
"""

import json
import os
import sys
from pathlib import Path

from .sagemaker_env import SageMakerPaths

PROGRAM, SOURCE = "sagemaker_program", "sagemaker_submit_directory"


def named_script(hyperparameters: dict, environ: dict, code_dir: Path | None = None) -> str | None:
    """The user's entry point a job names and has code for, or None. Named by ``SAGEMAKER_PROGRAM`` (wins) or
    ``sagemaker_program``; its code is ``SAGEMAKER_SUBMIT_DIRECTORY`` or ``sagemaker_submit_directory``, or
    already in ``code_dir`` (an image that carries its code in ``/opt/ml/code``). A program named with no code
    (the SDK's own hyperparameters passed to dogops' ``train``) is not a script: dogops' ``train`` runs."""
    def value(variable: str, hyperparameter: str) -> str | None:
        named = environ.get(variable) or hyperparameters.get(hyperparameter)
        return unquote(named) if isinstance(named, str) and named else None

    program = value("SAGEMAKER_PROGRAM", PROGRAM)
    if program and (value("SAGEMAKER_SUBMIT_DIRECTORY", SOURCE) or (code_dir and (code_dir / program).exists())):
        return program
    return None


def unquote(value: str) -> str:
    """A hyperparameter's string value: the SageMaker Python SDK JSON-quotes its own (``"\\"train.py\\""``)."""
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def _hyperparameters(paths: SageMakerPaths) -> dict:
    try:
        return paths.hyperparameters()
    except (OSError, ValueError):
        return {}  # dogops' train reports a broken hyperparameters.json itself


def framework() -> None:
    """The framework module the toolkit's trainer calls (``SAGEMAKER_TRAINING_MODULE``), as the PyTorch
    container's ``sagemaker_pytorch_container.training:main`` does for one process per host: the user's entry
    point run with its arguments and ``SM_*`` environment, its stderr's error lines kept for the failure
    reason (``ExecuteUserScriptError`` ... ``ErrorMessage``)."""
    from sagemaker_training import entry_point, environment

    env = environment.Environment()
    entry_point.run(uri=env.module_dir, user_entry_point=env.user_entry_point, args=env.to_cmd_args(),
                    env_vars=env.to_env_vars(), capture_error=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``train`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    paths = SageMakerPaths.from_env()
    if argv in ([], ["train"]) and named_script(_hyperparameters(paths), os.environ, paths.base / "code"):
        from sagemaker_training import trainer

        os.environ.setdefault("SAGEMAKER_TRAINING_MODULE", f"{__name__}:framework")
        trainer.train()  # exits with the user's status, as the toolkit's own `train`
    from .train import main as dogops_train

    return dogops_train(argv)
