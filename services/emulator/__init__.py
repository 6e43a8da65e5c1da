"""The AWS emulator: moto's server (``server``) and one module per AWS service it extends, each patching moto
when imported: SageMaker training jobs (``sagemaker_training``), tuning jobs (``sagemaker_tuning``), endpoints
(``sagemaker_endpoints``), list paging (``sagemaker_lists``) and describes shaped as AWS's
(``sagemaker_describes``), CloudFormation (``cloudformation``), Lambda function URLs (``lambda_urls``), ECR
(``ecr``), IAM enforcement (``iam_enforcement``, ``iam_authorize``) and its policy simulator (``iam_simulate``);
what moto lacks in any service is answered as AWS's errors (``unimplemented``).

    python -m services.emulator [--host 127.0.0.1] [--port 5000]
"""
