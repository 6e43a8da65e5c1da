"""dogops serving: the SageMaker hosting contract around the inference handlers.

- ``settings``: every environment variable the server reads, read once;
- ``errors``: the typed client errors and their JSON wire form;
- ``url_fetch``: the address-checked, bounded image download behind ``{"url": ...}``;
- ``images``: bounded, hostile-input-safe image decoding;
- ``inference``: the dogops model's handlers (``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``);
- ``toolkit_defaults``: the PyTorch inference toolkit's default handlers, for any other model;
- ``handlers``: finding the handler module (``code/inference.py``, ``SAGEMAKER_PROGRAM``) and running it;
- ``app``: the Flask app (``/ping``, ``/invocations``, ``/execution-parameters``);
- ``serve``: the ``serve`` console script (model download, gunicorn).
"""
