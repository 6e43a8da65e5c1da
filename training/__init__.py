"""dogops training: one `train` program for SageMaker jobs, tuning trials and EC2.

Modules, in the order a run uses them:

- ``sagemaker_env``: the ``/opt/ml`` contract (hyperparameters, channels, hosts);
- ``hyperparameters``: typed hyperparameters parsed from flags or strings;
- ``dataset``: the dogImages folder layout, image decoding, content hashing;
- ``model``: backbones, pretrained weights, the classifier head;
- ``features``: the on-disk backbone feature cache;
- ``loop``: head training with early stopping, checkpoints and DDP;
- ``artifact``: the model directory the serving image loads;
- ``archive``: ``model.tar.gz`` (the reproducible packer, the safe extractor) and ``s3://`` URIs;
- ``metrics``: the metric log lines and the reader of ``MetricDefinitions``;
- ``train``: the ``train`` console script tying it together.
"""
