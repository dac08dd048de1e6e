"""Celery workers: storage -> loader (fetch + decode) -> inference -> sink (database)."""
