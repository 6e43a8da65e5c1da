"""The AWS emulator: moto's server (``server``) and one module per AWS service it extends, each patching moto
when imported: SageMaker training jobs (``sagemaker_training``), tuning jobs (``sagemaker_tuning``), endpoints
(``sagemaker_endpoints``) and list paging (``sagemaker_lists``), CloudFormation (``cloudformation``), Lambda
function URLs (``lambda_urls``), ECR (``ecr``), IAM enforcement (``iam_enforcement``, ``iam_authorize``).

    python -m services.emulator [--host 127.0.0.1] [--port 5000]
"""
