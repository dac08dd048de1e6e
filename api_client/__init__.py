"""Client-side contract for queueing tagging work; importable without torch or the worker code."""

from api_client.contract import (
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    TASK_TAG_BATCH,
    ItemState,
    JobState,
)

__all__ = ["QUEUE_BULK", "QUEUE_INTERACTIVE", "TASK_TAG_BATCH", "ItemState", "JobState"]
