"""Which listed images a re-run tags: the comparison with what was recorded, and hashing (real files)."""

from __future__ import annotations

from pathlib import Path

from tagger.db.images import ImageRecord
from tagger.jobs.incremental import Incremental, Rehash
from tagger.storage import UNKNOWN, Fingerprint, Listed, LocalStorage, sha256_hex

ACTIVE = 7
FILE = Fingerprint(100, 1_700_000_000_000_000_000)
OBJECT = Fingerprint(100, None, "9b2cf535f27731c974343645a3985328")


def _record(
    image_id: int, fingerprint: Fingerprint, version: int | None = ACTIVE, sha256: str | None = None
) -> ImageRecord:
    return ImageRecord(image_id, version, fingerprint.size, fingerprint.mtime_ns, fingerprint.etag, sha256)


def test_only_what_the_active_version_tagged_from_the_same_bytes_is_passed_over() -> None:
    cases = {  # key: (what the listing says, what was recorded, passed over)
        "same file": (FILE, _record(1, FILE), True),
        "same object": (OBJECT, _record(2, OBJECT), True),
        "never tagged": (FILE, _record(3, UNKNOWN, version=None), False),
        "stale": (FILE, _record(4, FILE, version=ACTIVE - 1), False),
        "failed last time": (FILE, _record(5, UNKNOWN), False),  # a failure cleared the record
        "bigger": (FILE._replace(size=101), _record(6, FILE), False),
        "touched": (FILE._replace(mtime_ns=1_700_000_000_000_000_001), _record(7, FILE), False),
        "new etag": (OBJECT._replace(etag="0" * 32), _record(8, OBJECT), False),
        "listing says nothing": (UNKNOWN, _record(9, UNKNOWN), False),
        "size alone": (Fingerprint(100), _record(10, Fingerprint(100)), False),  # not enough to tell
    }
    listed = [Listed(key, listing) for key, (listing, _, _) in cases.items()]
    todo, passed = Incremental(ACTIVE).split(listed, {key: record for key, (_, record, _) in cases.items()})
    assert todo == [key for key, (_, _, skip) in cases.items() if not skip] and passed == 2
    todo, passed = Incremental(None).split(listed[:2], {k: cases[k][1] for k in ("same file", "same object")})
    assert (todo, passed) == (["same file", "same object"], 0)  # no active model: nothing is up to date


def test_with_hashing_what_looks_unchanged_is_read_and_decided_by_its_hash(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for name, data in (("same.jpg", b"same"), ("other.jpg", b"new bytes"), ("quiet.jpg", b"quiet")):
        (tmp_path / name).write_bytes(data)
    records = {
        "same.jpg": _record(1, FILE, sha256=sha256_hex(b"same")),
        "other.jpg": _record(2, FILE, sha256=sha256_hex(b"old bytes")),  # replaced, size and time kept
        "quiet.jpg": _record(3, UNKNOWN, sha256=sha256_hex(b"quiet")),  # the listing says nothing: the hash does
        "unhashed.jpg": _record(4, FILE),  # tagged without hashing: tagged again, to record one
        "gone.jpg": _record(5, FILE, sha256=sha256_hex(b"gone")),  # cannot be read now: its item will say why
        "moved.jpg": _record(6, FILE, sha256=sha256_hex(b"moved")),  # the listing shows other bytes: no read
    }
    listed = [Listed(k, FILE) for k in ("same.jpg", "other.jpg", "unhashed.jpg", "gone.jpg")]
    listed += [Listed("quiet.jpg", UNKNOWN), Listed("moved.jpg", FILE._replace(size=5))]
    rehash = Rehash(storage, threads=2, max_bytes=1 << 20)
    try:
        todo, passed = Incremental(ACTIVE, rehash).split(listed, records)
    finally:
        rehash.close()
    assert sorted(todo) == ["gone.jpg", "moved.jpg", "other.jpg", "unhashed.jpg"] and passed == 2


def test_a_listing_and_a_read_say_the_same_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.jpg").write_bytes(b"12345")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "a" / "one.jpg")  # a link: the file it leads to, as read
    storage = LocalStorage(tmp_path)
    listed = {e.key: e.fingerprint for e in storage.list_entries()}
    status = (tmp_path / "a" / "one.jpg").stat()
    assert listed["a/one.jpg"] == listed["link.jpg"] == Fingerprint(5, status.st_mtime_ns)
    assert storage.fetch("link.jpg") == (b"12345", listed["link.jpg"])
