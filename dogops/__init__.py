"""dogops: the host-side command line of the kit: data (``dogops data``), local training helpers, tuning
(``tuning``), the local stack's commands (``stack_cli``: ``up``, ``down``, ``status``, ``env``, ``invoke``),
deploying a model (``deploy``) and promotion to AWS (``promote``); the Lambda function's source (``function``)."""
