"""Queue tagging work from a web backend: the wire contract and a small typed client.

Importable without torch or the worker code; the client needs only kombu, redis and SQLAlchemy.
"""

from tagger_client.contract import (
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    TASK_CONTROL_JOB,
    TASK_SUBMIT_JOB,
    TASK_TAG_BATCH,
    ItemState,
    JobSpec,
    JobState,
    MessageError,
    job_id_for,
)
from tagger_client.errors import (
    ApiUnavailable,
    BrokerUnavailable,
    ClientError,
    DatabaseUnavailable,
    ImageNotFound,
    InvalidCursor,
    InvalidSubmission,
    JobNotFound,
    TagNotFound,
    WaitTimeout,
)


def __getattr__(name: str) -> object:
    # The client pulls kombu and SQLAlchemy; the contract alone (used by the worker) does not.
    if name in ("TaggerClient", "JobStatus", "SimilarImage", "SimilarImages", "Suggestion", "TagPage"):
        from tagger_client import client

        return getattr(client, name)
    raise AttributeError(name)


__all__ = [
    "ApiUnavailable",
    "QUEUE_BULK",
    "QUEUE_INTERACTIVE",
    "TASK_CONTROL_JOB",
    "TASK_SUBMIT_JOB",
    "TASK_TAG_BATCH",
    "BrokerUnavailable",
    "ClientError",
    "DatabaseUnavailable",
    "ImageNotFound",
    "InvalidCursor",
    "InvalidSubmission",
    "ItemState",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "MessageError",
    "JobStatus",
    "SimilarImage",
    "SimilarImages",
    "Suggestion",
    "TagNotFound",
    "TagPage",
    "TaggerClient",
    "WaitTimeout",
    "job_id_for",
]
