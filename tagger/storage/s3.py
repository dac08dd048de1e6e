"""An S3 bucket/prefix as storage, through boto3 (endpoint from AWS_ENDPOINT_URL, as boto3 reads it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from tagger.errors import ConfigError, ImageError, ObjectMissingError, PermanentError, StorageError
from tagger.storage.base import Blob, Fingerprint, Listed
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

    def list_entries(self, prefix: str = "", *, passed_over: Counter[str] | None = None) -> Iterator[Listed]:
        """Page through ListObjectsV2; one page (at most 1,000 keys) is held at a time. Each object comes
        with the size and ETag the page already carries."""
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
                        yield Listed(key, Fingerprint(obj.get("Size"), None, _etag(obj.get("ETag"))))
        except self.client.exceptions.NoSuchBucket:
            raise ObjectMissingError(f"no such bucket: {self.bucket}") from None
        except Exception as exc:
            if _is_botocore_error(exc):
                raise StorageError(f"cannot list {self.url}: {exc}") from exc
            raise

    def check(self, prefix: str = "") -> None:
        """The bucket exists and something is stored under the prefix; else say what is there instead."""
        import difflib

        full = f"{self.prefix}/{prefix}" if self.prefix and prefix else (self.prefix or prefix)
        try:
            page = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=full.rstrip("/") + "/" if full else "", MaxKeys=1
            )
            if page.get("KeyCount", 0):
                return
            parent = full.rstrip("/").rpartition("/")[0]
            siblings = self.client.list_objects_v2(
                Bucket=self.bucket, Prefix=parent + "/" if parent else "", Delimiter="/", MaxKeys=1000
            )
        except self.client.exceptions.NoSuchBucket:
            raise ObjectMissingError(f"no such bucket: {self.bucket}") from None
        except Exception as exc:
            if _is_botocore_error(exc):
                code = _error_code(exc)
                if code in PERMANENT_CODES:
                    raise PermanentError(
                        f"cannot list s3://{self.bucket}/{full}: {code}{PERMANENT_CODES[code]}"
                    ) from None
                raise StorageError(f"cannot list s3://{self.bucket}/{full}: {exc}") from exc
            raise
        there = [p["Prefix"].rstrip("/") for p in siblings.get("CommonPrefixes", [])]
        close = difflib.get_close_matches(full.rstrip("/"), there, n=3)
        hint = f"; did you mean {', '.join(f's3://{self.bucket}/{c}' for c in close)}?" if close else ""
        where = f"s3://{self.bucket}/{full}".rstrip("/")
        raise ObjectMissingError(f"nothing is stored under {where}{hint}")

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self.fetch(key, max_bytes=max_bytes).data

    def fetch(self, key: str, *, max_bytes: int | None = None) -> Blob:
        """The object's bytes, with the size and ETag of the GetObject answer that carried them."""
        object_key = self._object_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            size = response.get("ContentLength", 0)
            if max_bytes is not None and size > max_bytes:
                response["Body"].close()
                raise ImageError(f"object is {size} bytes, over the limit of {max_bytes}")
            data = response["Body"].read()
            return Blob(data, Fingerprint(len(data), None, _etag(response.get("ETag"))))
        except self.client.exceptions.NoSuchKey:
            raise ObjectMissingError(f"no such object: {self.url}/{key}") from None
        except self.client.exceptions.NoSuchBucket:
            raise ObjectMissingError(f"no such bucket: {self.bucket}") from None
        except Exception as exc:
            if _is_botocore_error(exc):
                code = _error_code(exc)
                if code in PERMANENT_CODES:
                    raise PermanentError(f"cannot read {self.url}/{key}: {code}{PERMANENT_CODES[code]}") from None
                raise StorageError(f"cannot read {self.url}/{key}: {exc}") from exc
            raise

    def write(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._object_key(key), Body=data)
        except Exception as exc:
            if _is_botocore_error(exc):
                raise StorageError(f"cannot write {self.url}/{key}: {exc}") from exc
            raise

    def create(self) -> bool:
        """Create the bucket unless it exists (a prefix needs no creating in S3)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return False
        except Exception as exc:
            if not (_is_botocore_error(exc) and _error_code(exc) in ("404", "NoSuchBucket")):
                if _is_botocore_error(exc):
                    raise StorageError(f"cannot check bucket {self.bucket}: {exc}") from None
                raise
        region = self.client.meta.region_name
        where = (
            {"CreateBucketConfiguration": {"LocationConstraint": region}} if region not in (None, "us-east-1") else {}
        )
        try:
            self.client.create_bucket(Bucket=self.bucket, **where)
        except Exception as exc:
            if _is_botocore_error(exc) and _error_code(exc) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            if _is_botocore_error(exc):
                raise StorageError(f"cannot create bucket {self.bucket}: {exc}") from None
            raise
        return True

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
        except Exception as exc:
            if _is_botocore_error(exc):
                raise StorageError(f"cannot delete {self.url}/{key}: {exc}") from exc
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object_key(key))
            return True
        except Exception as exc:
            if _is_botocore_error(exc) and "404" in str(exc):
                return False
            raise


# S3 answers that no retry can change (the credentials, the policy or the bucket must change first), with
# what to check. Everything else from botocore (timeouts, 5xx, throttling) is retried.
PERMANENT_CODES = {
    "AccessDenied": " (the credentials' policy does not allow it)",
    "AllAccessDisabled": " (all access to this bucket is disabled)",
    "InvalidAccessKeyId": " (check AWS_ACCESS_KEY_ID)",
    "SignatureDoesNotMatch": " (check AWS_SECRET_ACCESS_KEY)",
    "InvalidBucketName": "",
    "NoSuchBucket": "",
    "403": " (forbidden: check the credentials and the bucket policy)",
}


def _etag(value: str | None) -> str | None:
    """An ETag as S3 sends it (in quotes, in listings and GetObject alike) without its quotes; None if absent."""
    return (value.strip('"') or None) if value else None


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _is_botocore_error(exc: Exception) -> bool:
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, BotoCoreError | ClientError)
