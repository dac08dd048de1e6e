from __future__ import annotations

import pytest

from tagger_client.contract import JobSpec, MessageError, validate_tag_batch_args

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


def test_a_listing_is_incremental_unless_told_and_keys_are_tagged_as_named() -> None:
    assert JobSpec.new(prefix="").passes_over_unchanged
    assert not JobSpec.new(prefix="", incremental=False).passes_over_unchanged
    assert not JobSpec.new(keys=["a.jpg"]).passes_over_unchanged
    assert not JobSpec.new(keys=["a.jpg"], incremental=False).passes_over_unchanged  # what keys mean anyway
    spec = JobSpec.new(prefix="", incremental=False, content_hash=True)
    assert JobSpec.from_message(spec.to_message()) == spec  # both travel in the message


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"keys": ["a.jpg"], "incremental": True}, "incremental needs a prefix"),
        ({"query": "stale", "incremental": False}, "a query selects its own images"),
        ({"prefix": "", "incremental": "yes"}, "incremental must be true or false"),
        ({"prefix": "", "content_hash": 1}, "content_hash must be true or false"),
    ],
)
def test_incremental_and_hashing_are_refused_where_they_mean_nothing(values: dict[str, object], says: str) -> None:
    with pytest.raises(MessageError, match=says):
        JobSpec.new(**values)
