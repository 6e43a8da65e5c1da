"""dogops: the host-side CLI of the kit (data, and later the stack, tuning and promotion)."""
