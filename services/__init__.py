"""Local-only services of the dogops stack: the AWS emulator, the data-plane gateway, the demo page."""
