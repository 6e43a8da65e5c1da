"""The stack as a whole: the names and addresses its processes share (``settings``), the native stack's
supervisor (``supervisor``, which ``dogops up`` starts), the bootstrap that seeds data and publishes the model
(``bootstrap``), and the registry behind the emulator's ECR (``registry``)."""
