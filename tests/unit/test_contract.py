from __future__ import annotations

import pytest

from tagger_client.contract import MessageError, validate_tag_batch_args

JOB = "0123456789abcdef0123456789abcdef"


def test_valid_arguments_pass() -> None:
    assert validate_tag_batch_args([JOB, [3, 1]]) == (JOB, [3, 1])


@pytest.mark.parametrize(
    "args",
    [
        [],
        [JOB],
        ["not-a-job", [1]],
        [JOB, []],
        [JOB, "1"],
        [JOB, ["a.jpg"]],
        [JOB, [0]],
        [JOB, [True]],
        [JOB, [1] * 2000],
    ],
)
def test_malformed_messages_are_refused(args: list[object]) -> None:
    with pytest.raises(MessageError):
        validate_tag_batch_args(args)
