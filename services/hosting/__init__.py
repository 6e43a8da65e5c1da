"""Endpoints served by their own model server: the model's image run as a container with its model, and
registered in the emulator's route table so that the gateway's ``InvokeEndpoint`` reaches it (``endpoints``)."""
