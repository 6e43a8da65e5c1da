"""The one retry rule for IAM propagation: only the matching refusal is retried, with growing pauses, within a
time limit; anything else is raised at once."""

import pytest
from botocore.exceptions import ClientError

from dogops.iam_propagation import INSTANCE_PROFILE_NOT_READY, ROLE_NOT_ASSUMABLE, while_propagating

LAMBDA = "The role defined for the function cannot be assumed by Lambda."
SAGEMAKER = ("Could not assume role arn:aws:iam::123456789012:role/dogops-dev-training. Please ensure that the role "
             "exists and allows principal 'sagemaker.amazonaws.com' to assume the role.")
EC2 = "Value (dogops-dev-ec2-training) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"


def _error(message: str, code: str = "ValidationException") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "Operation")


class Clock:
    """A fake clock that ``sleep`` moves on."""

    def __init__(self):
        self.now, self.pauses = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def _calls(*outcomes):
    """A call that raises or returns each outcome in turn; its count of calls."""
    made = []

    def call():
        made.append(1)
        outcome = outcomes[len(made) - 1]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return call, made


@pytest.mark.parametrize("pattern, message", [(ROLE_NOT_ASSUMABLE, LAMBDA), (ROLE_NOT_ASSUMABLE, SAGEMAKER),
                                              (INSTANCE_PROFILE_NOT_READY, EC2)])
def test_the_service_s_own_words_are_retried_with_growing_pauses(pattern, message):
    clock, lines = Clock(), []
    call, made = _calls(_error(message), _error(message), _error(message), "done")
    assert while_propagating(call, pattern, "role", 60, lines.append, sleep=clock.sleep, clock=lambda: clock.now) \
        == "done"
    assert len(made) == 4 and clock.pauses == [1, 2, 4] and all("not usable yet" in line for line in lines)


def test_a_real_error_is_raised_at_once():
    clock = Clock()
    call, made = _calls(_error("1 validation error detected: Value 'x' at 'roleArn' failed"), "never")
    with pytest.raises(ClientError, match="validation error"):
        while_propagating(call, ROLE_NOT_ASSUMABLE, "role", 60, sleep=clock.sleep, clock=lambda: clock.now)
    assert len(made) == 1 and clock.pauses == []


def test_a_lasting_refusal_costs_at_most_the_time_limit_and_none_without_one():
    clock = Clock()
    call, made = _calls(*[_error(LAMBDA)] * 20)
    with pytest.raises(ClientError, match="cannot be assumed"):
        while_propagating(call, ROLE_NOT_ASSUMABLE, "role", 30, longest=8, sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.pauses == [1, 2, 4, 8, 8] and clock.now <= 30  # the next 8 s pause would end past 30 s
    call, made = _calls(_error(LAMBDA))
    with pytest.raises(ClientError):
        while_propagating(call, ROLE_NOT_ASSUMABLE, "role", 0, sleep=clock.sleep, clock=lambda: clock.now)
    assert len(made) == 1
