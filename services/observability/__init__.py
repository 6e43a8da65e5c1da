"""CloudWatch Logs and metrics of the local stack, written to the emulator as AWS's services write them."""
