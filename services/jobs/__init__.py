"""The runners of the emulator's SageMaker jobs: a training job run from its description as SageMaker runs it
(``training``: natively or in the job's image), a tuning job by the local tuner with its trials as training jobs
(``tuning``), and the S3 download and reproducible ``model.tar.gz`` they share (``sagemaker_s3``)."""
