"""The data-plane gateway: what no emulator provides (SageMaker Runtime, Lambda Invoke, an API route, the page)."""
