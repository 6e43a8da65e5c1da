"""The function's reserved concurrency (3) holds under a burst: 200s and 429s, never a 5xx."""

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from botocore.exceptions import ClientError


def test_50_concurrent_invokes_against_reserved_concurrency_3(lambda_, stack_env):
    payload = json.dumps({"url": f"{stack_env['DOGOPS_SAMPLES_URL']}/dog.jpg"})

    def call(_):
        try:
            response = lambda_.invoke(FunctionName=stack_env["DOGOPS_FUNCTION_NAME"], Payload=payload)
        except ClientError as exc:
            return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]
        answer = json.loads(response["Payload"].read())
        return response["StatusCode"], response.get("FunctionError") or answer["statusCode"]

    with ThreadPoolExecutor(50) as pool:
        outcomes = Counter(pool.map(call, range(50)))
    assert set(outcomes) <= {(200, 200), (429, "TooManyRequestsException")}, outcomes
    assert outcomes[(200, 200)] >= 3 and outcomes[(429, "TooManyRequestsException")] >= 1, outcomes
