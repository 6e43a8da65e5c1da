"""Hyperparameter tuning: one spec, run locally with optuna or sent to SageMaker.

- ``spec``: the spec file (SageMaker's ``HyperParameterTuningJobConfig`` vocabulary) and its search space;
- ``trial``: one trial as a ``train`` process (or training container) under the SageMaker contract;
- ``local``: the local tuning job: optuna study, parallel trials, pruning, resume, results;
- ``request``: the same spec as a ``CreateHyperParameterTuningJob`` request;
- ``best``: the best trial's packaged model and its record, which ``dogops deploy`` uses.
"""
