"""The local stack of dogops, one sub-package per role:

- ``emulator``: moto's server and one module per AWS service it extends (SageMaker training, tuning and
  endpoints; CloudFormation; Lambda function URLs; ECR; IAM enforcement);
- ``gateway``: the data planes no emulator provides (SageMaker Runtime, Lambda Invoke, the API route, the page);
- ``jobs``: the runners of the emulator's training and tuning jobs, as SageMaker runs them;
- ``hosting``: endpoints served by their own model server (a container of the model's image);
- ``security``: the guard in front of every port, SigV4 verification, refusals per protocol;
- ``stack``: the shared settings, the supervisor of the native stack, its bootstrap and the image registry.
"""
