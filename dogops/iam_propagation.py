"""One retry rule for IAM's eventual consistency, for every caller that uses a role just made or changed.

A role or instance profile made (or changed) a moment ago is refused for some seconds by the service that must use
it, in that service's own words: Lambda's "The role defined for the function cannot be assumed by Lambda",
SageMaker's "Could not assume role ...", EC2's "Invalid IAM Instance Profile name/ARN". ``while_propagating``
calls again, after pauses of 1, 2, 4, ... seconds (at most ``longest``), while that is the answer.

The match rule: only a botocore ``ClientError`` whose error message matches ``pattern`` (a regular expression,
searched case-insensitively: ``ROLE_NOT_ASSUMABLE``, ``INSTANCE_PROFILE_NOT_READY``) is tried again, and only
while the next pause ends within ``within_s`` seconds of the first call; any other error, and the last matching
one, is raised as it came. A real error that reads like propagation (a role whose trust policy names the wrong
service) therefore costs at most ``within_s``, and a caller that made nothing new passes ``within_s=0``: no retry.
"""

import re
import time

from botocore.exceptions import ClientError

ROLE_NOT_ASSUMABLE = r"cannot be assumed|could not assume role"
INSTANCE_PROFILE_NOT_READY = r"invalid iam instance profile"


def while_propagating(call, pattern: str, what: str, within_s: float = 60, echo=None, longest: float = 16,
                      sleep=time.sleep, clock=time.monotonic):
    """``call()``, again while it fails with a ``ClientError`` matching ``pattern`` and ``within_s`` allows
    (see the module's rule); ``echo`` (if given) says each retry, naming ``what`` is not usable yet."""
    deadline, pause = clock() + within_s, 1.0
    while True:
        try:
            return call()
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", "")
            if not re.search(pattern, message, re.IGNORECASE) or clock() + pause > deadline:
                raise
            if echo:
                echo(f"the new {what} is not usable yet ({message}); retrying in {pause:g} s")
            sleep(pause)
            pause = min(longest, pause * 2)
