"""A local folder as storage; symlinks and `..` can never lead outside the root."""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from tagger.errors import ImageError, InvalidKeyError, ObjectMissingError, PermanentError, StorageError
from tagger.storage.base import UNKNOWN, Blob, Fingerprint, Listed
from tagger.storage.keys import validate_key


class LocalStorage:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        validate_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidKeyError(f"key resolves outside the storage root: {key!r:.80}")
        return path

    def list_entries(self, prefix: str = "", *, passed_over: Counter[str] | None = None) -> Iterator[Listed]:
        """Depth-first, in lexicographic order (as S3 lists), holding one directory's names at a time; each
        file with its size and modification time (one stat, through links, as a read would open it).

        Links out of the root are never followed, and each folder is walked once however links inside the
        root are arranged (a link back to an ancestor, two folders linking to each other, a second link to
        one folder): the first way in is walked, the others are passed over. Those, and an unreadable
        folder, are counted in `passed_over` and never stop the listing. Names that are not UTF-8 come as
        Python's surrogate escapes.
        """
        skipped = passed_over if passed_over is not None else Counter()
        start = self._path(prefix.rstrip("/")) if prefix else self.root
        if not start.is_dir():
            return
        # (path, its key relative to the root, is a folder): keys are built by joining names, not Paths.
        rel = start.relative_to(self.root).as_posix()
        stack: list[tuple[str, str, bool]] = [(str(start), "" if rel == "." else f"{rel}/", True)]
        walked: set[tuple[int, int]] = set()  # (device, inode) of every folder listed so far
        while stack:
            path, key, is_dir = stack.pop()
            if not is_dir:
                yield Listed(key, _stat_fingerprint(path))
                continue
            try:
                folder = os.stat(path)
                if (folder.st_dev, folder.st_ino) in walked:
                    skipped["a folder reached again through a link"] += 1
                    continue
                walked.add((folder.st_dev, folder.st_ino))
                with os.scandir(path) as it:
                    entries = sorted(it, key=lambda e: e.name, reverse=True)
            except OSError as exc:
                if path == str(start):
                    raise StorageError(f"cannot list {path}: {exc}") from exc
                skipped[f"unreadable folder ({exc.strerror or exc})"] += 1
                continue
            for entry in entries:
                if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(self.root):
                    skipped["a link out of the storage root"] += 1
                elif entry.is_dir():
                    stack.append((entry.path, f"{key}{entry.name}/", True))
                elif entry.is_file():
                    stack.append((entry.path, f"{key}{entry.name}", False))
                else:
                    skipped["not a regular file"] += 1

    def check(self, prefix: str = "") -> None:
        if not self.root.is_dir():
            raise ObjectMissingError(f"no such folder: {self.root}")
        if prefix and not self._path(prefix.rstrip("/")).is_dir():
            raise ObjectMissingError(f"no folder {prefix!r} in {self.root}")

    def read(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self.fetch(key, max_bytes=max_bytes).data

    def fetch(self, key: str, *, max_bytes: int | None = None) -> Blob:
        """The file's bytes, with the size and modification time of the file they were read from (its fstat).
        Only a regular file is read: a named pipe or a device under the key is refused before a byte is read
        (opened non-blocking, so a pipe with no writer cannot hold the reader)."""
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise ObjectMissingError(f"no such file: {key}") from None
        except IsADirectoryError:
            raise ObjectMissingError(f"is a directory: {key}") from None
        except PermissionError as exc:  # retrying cannot help until someone changes the permissions
            raise PermanentError(f"cannot read {key}: permission denied ({exc.strerror})") from None
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc
        try:
            status = os.fstat(fd)
            if stat.S_ISDIR(status.st_mode):
                raise ObjectMissingError(f"is a directory: {key}")
            if not stat.S_ISREG(status.st_mode):
                raise PermanentError(f"cannot read {key}: not a regular file ({_file_kind(status.st_mode)})")
            if max_bytes is not None and status.st_size > max_bytes:
                raise ImageError(f"file is {status.st_size} bytes, over the limit of {max_bytes}")
            with open(fd, "rb") as fh:
                fd = -1  # the file object owns it now
                return Blob(fh.read(), Fingerprint(status.st_size, status.st_mtime_ns))
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc
        finally:
            if fd >= 0:
                os.close(fd)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def create(self) -> bool:
        existed = self.root.is_dir()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {self.root}: {exc.strerror or exc}") from None
        return not existed

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def _stat_fingerprint(path: str) -> Fingerprint:
    """A listed file's size and modification time; unknown when it vanished meanwhile (its read says why)."""
    try:
        status = os.stat(path)
    except OSError:
        return UNKNOWN
    return Fingerprint(status.st_size, status.st_mtime_ns)


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")]
    kinds += [(stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a file")
