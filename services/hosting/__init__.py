"""Endpoints served by their own model server: a container of the model's image with its model, run as
SageMaker runs one (``containers``), registered in the emulator's route table so that the gateway's
``InvokeEndpoint`` reaches it, rolled on update and removed with the endpoint (``endpoints``)."""
