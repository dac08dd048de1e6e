"""Typed client errors: each says what went wrong and what to do."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the tagger client raises."""


class InvalidSubmission(ClientError):
    """The request breaks the wire contract (nothing was sent)."""


class BrokerUnavailable(ClientError):
    """The message could not be published to the broker (nothing was queued)."""


class DatabaseUnavailable(ClientError):
    """The job database could not be read."""


class JobNotFound(ClientError):
    """No such job (yet: a worker creates it when it takes the submission)."""


class WaitTimeout(ClientError):
    """The job did not end within the timeout; it keeps running."""


class ImageNotFound(ClientError):
    """No image with that key (under that storage) was ever submitted for tagging."""


class InvalidCursor(ClientError):
    """A page cursor that no page handed out (or a cursor given with an offset)."""


class TagNotFound(ClientError):
    """No such tag in the vocabulary."""


class ApiUnavailable(ClientError):
    """`tagger serve` was not configured (api_url) or cannot be reached; nothing was asked."""
