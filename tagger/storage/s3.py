"""An S3 bucket/prefix as storage, through boto3 (endpoint from AWS_ENDPOINT_URL, as boto3 reads it)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tagger.errors import ConfigError, ImageError, ObjectMissingError, StorageError
from tagger.storage.keys import validate_key


class S3Storage:
    def __init__(self, bucket: str, prefix: str = "", *, client: Any = None, max_pool: int = 32) -> None:
        if not bucket:
            raise ConfigError("an s3:// URL needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            validate_key(self.prefix)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client
        self._max_pool = max_pool

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                max_pool_connections=self._max_pool,
                retries={"max_attempts": 5, "mode": "adaptive"},
            )
            self._client = boto3.session.Session().client("s3", config=config)
        return self._client

    def _object_key(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        """Page through ListObjectsV2; one page (at most 1,000 keys) is held at a time."""
        full_prefix = self.prefix + "/" if self.prefix else ""
        if prefix:
            full_prefix += prefix
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"][strip:]
                    if key and not key.endswith("/"):
                        yield key
        except self.client.exceptions.NoSuchBucket:
            raise ObjectMissingError(f"no such bucket: {self.bucket}") from None
        except Exception as exc:
            if _is_botocore_error(exc):
                raise StorageError(f"cannot list {self.url}: {exc}") from exc
            raise

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        object_key = self._object_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            size = response.get("ContentLength", 0)
            if max_bytes is not None and size > max_bytes:
                response["Body"].close()
                raise ImageError(f"object is {size} bytes, over the limit of {max_bytes}")
            return response["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise ObjectMissingError(f"no such object: {self.url}/{key}") from None
        except Exception as exc:
            if _is_botocore_error(exc):
                raise StorageError(f"cannot read {self.url}/{key}: {exc}") from exc
            raise

    def write(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._object_key(key), Body=data)
        except Exception as exc:
            if _is_botocore_error(exc):
                raise StorageError(f"cannot write {self.url}/{key}: {exc}") from exc
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
            return True
        except Exception as exc:
            if _is_botocore_error(exc) and "404" in str(exc):
                return False
            raise


def _is_botocore_error(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError)
