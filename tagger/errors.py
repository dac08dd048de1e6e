"""A small error tree: permanent errors are recorded against one item, retryable ones are retried."""

from __future__ import annotations


class TaggerError(Exception):
    """Base of every error tagger raises on purpose; its message is meant for a user."""

    exit_code = 1


class ConfigError(TaggerError):
    """A setting is unknown or malformed; the message says what would be right."""

    exit_code = 2


class NotFoundError(TaggerError):
    """Nothing by that name: an image, a job, a model version, a tag, a database."""

    exit_code = 3


class UnavailableError(TaggerError):
    """A server (database, broker, storage) cannot be reached; the message names it, without secrets."""

    exit_code = 5


class WorkersExitedError(TaggerError):
    """The local worker processes a command started stopped while it waited on them; the message says why,
    from their own log, where it can."""

    def __init__(self, message: str, *, job_id: str = "") -> None:
        super().__init__(message)
        self.job_id = job_id  # the job that was waiting: unfinished, so it can be run again


class PermanentError(TaggerError):
    """Retrying cannot help (a corrupt image, a bad key): record it and move on."""


class RetryableError(TaggerError):
    """A storage, database or broker hiccup: retry with backoff."""


class InvalidKeyError(PermanentError, ValueError):
    """A storage key that could escape its root or is malformed; refused before any I/O."""


class ObjectMissingError(PermanentError, NotFoundError):
    """The key is well formed but nothing is stored under it."""


class StorageError(RetryableError):
    pass


class ImageError(PermanentError):
    """The bytes are not an image we accept (corrupt, truncated, too large, wrong format)."""


class ArtifactError(TaggerError):
    """A model artifact failed its checksum, shape or vocabulary checks; it is never loaded."""

    exit_code = 4


class NoActiveModelError(NotFoundError):
    def __init__(self) -> None:
        super().__init__(
            "no active model: train one with `tagger train` or activate one with `tagger models activate VERSION`"
        )


def first_line(exc: BaseException) -> str:
    """An exception as one line for people: the driver's own message, without SQL or a traceback."""
    inner = getattr(exc, "orig", None) or exc
    return str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
