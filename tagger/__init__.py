"""tagger: asynchronous batch tagging of image archives (storage -> queue -> CNN -> SQL)."""

__version__ = "0.1.0"
