"""Labelled stills: the `image_id,tags` CSV, and the decisions people made in the database (the training data).

Label files are read as spreadsheets and scripts write them: a byte-order mark, Windows line ends and
quoted fields are fine, a header row is recognised (`image_id,tags`, `image_name,tags`, ...), tags are
split on spaces or commas, and one image listed on several rows gets the union of its tags. A line that
cannot be read (a bad key, a bad tag name, no tags column) is refused alone, with its line number, and the
other lines are read. What was normalised or refused is reported, never silent.

Tag names are Unicode NFKC, then lower case (`str.lower`): a name typed decomposed (e + combining acute),
in full-width letters or in capitals is the same tag as its plain composed lower-case spelling.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.db.images import image_ids, storage_id
from tagger.db.schema import Image, Label, Storage, Suggestion, Tag, utcnow
from tagger.db.upsert import insert_ignore, upsert
from tagger.errors import ConfigError, NotFoundError, PermanentError
from tagger.model.familiarity import UNFAMILIAR
from tagger.storage import canonical_url, validate_key

TAG_NAME = re.compile(r"^[^\W_][\w.&'+:/-]*$")
MAX_TAG_LENGTH = 100
_KEY_HEADERS = {"image_id", "image", "id", "image_name", "imagename", "filename", "file", "key", "path", "name"}
_TAG_HEADERS = {"tags", "tag", "labels", "label"}


@dataclass(frozen=True)
class LabelledSet:
    """Images (keys, each under its storage root) with the tags that apply to them."""

    keys: list[str]
    tags: list[list[str]]
    storage_urls: list[str] = field(default_factory=list)  # parallel to keys; empty: the caller's --images
    notes: list[str] = field(default_factory=list)  # what reading normalised, for people
    refused: list[str] = field(default_factory=list)  # "file:line: reason" for each line not read
    groups: list[str] = field(default_factory=list)  # parallel to keys: each image's group for the split

    @property
    def vocabulary(self) -> list[str]:
        return sorted({t for row in self.tags for t in row})

    def tag_counts(self) -> Counter[str]:
        return Counter(t for row in self.tags for t in row)

    def under(self, storage_url: str) -> LabelledSet:
        """The same set with every image under `storage_url` (a CSV's keys are relative to --images)."""
        return dataclasses.replace(self, storage_urls=[storage_url] * len(self.keys))

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for key, tags in zip(self.keys, self.tags, strict=True):
            digest.update(f"{key}\t{' '.join(sorted(tags))}\n".encode())
        return digest.hexdigest()

    def split(self, valid_fraction: float, *, by_key: bool = False) -> tuple[LabelledSet, LabelledSet]:
        """A deterministic split by the hash of each image's group (`groups`; each key its own group when it
        is empty, or with `by_key`): the same images are held out on every run, and a group is never
        divided, so near-duplicates cannot sit on both sides (tagger.training.groups)."""
        train, valid = LabelledSet([], [], []), LabelledSet([], [], [])
        urls = self.storage_urls or [""] * len(self.keys)
        groups = self.keys if by_key or not self.groups else self.groups
        for key, tags, url, group in zip(self.keys, self.tags, urls, groups, strict=True):
            bucket = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            target = valid if bucket < valid_fraction else train
            target.keys.append(key)
            target.tags.append(tags)
            target.storage_urls.append(url)
            target.groups.append(group)
        if not train.keys or not valid.keys:
            raise ConfigError(
                f"splitting {len(self.keys)} labelled images ({len(set(groups))} groups of near-duplicates) left "
                "no training or no held-out image; label more images (at least 10 are needed) or change "
                "--valid-fraction"
            )
        return train, valid


def normalise_tag(name: str) -> str:
    """A tag name as stored: NFKC, lower case, one word (no spaces: label files separate tags with them)."""
    tag = unicodedata.normalize("NFKC", name).strip().lower()
    if not tag:
        raise ConfigError("an empty tag name")
    if any(ch.isspace() for ch in tag):
        raise ConfigError(f"tag {name!r} has spaces; tags are single words (join words with -, e.g. black-and-white)")
    if len(tag) > MAX_TAG_LENGTH or not TAG_NAME.match(tag):
        raise ConfigError(
            f"tag {name!r} is not a tag name: letters, digits and . & ' + : / - _ only, starting with a letter "
            f"or digit, at most {MAX_TAG_LENGTH} characters"
        )
    return tag


def read_labels_csv(path: Path) -> LabelledSet:
    """Read `image_id,tags` rows as people save them (see the module's docstring); image_id is the storage key.

    Raises ConfigError when the file is missing, is not UTF-8, or has no line that could be read.
    """
    if not path.is_file():
        raise ConfigError(f"labels file not found: {path}")
    by_key: dict[str, list[str]] = {}
    merged: list[str] = []
    refused: list[str] = []
    lowered: Counter[str] = Counter()
    header = False
    with open(path, newline="", encoding="utf-8-sig") as fh:
        for lineno, row in _rows(path, fh):
            cells = [c.strip() for c in row]
            if not any(cells):
                continue
            if (
                not by_key
                and not header
                and not refused
                and cells[0].lower() in _KEY_HEADERS
                and (len(cells) < 2 or cells[1].lower() in _TAG_HEADERS)
            ):
                header = True
                continue
            try:
                key, tags = _read_row(cells, lowered)
            except (ConfigError, PermanentError) as exc:
                refused.append(f"{path}:{lineno}: {exc}")
                continue
            if key in by_key:
                merged.append(key)
            by_key.setdefault(key, [])
            by_key[key] = sorted(set(by_key[key]) | set(tags))
    if not by_key:
        raise ConfigError(f"{path} has no labelled rows" + "".join(f"\n  refused {line}" for line in refused[:10]))
    notes = []
    if header:
        notes.append("the first row is a header")
    if lowered:
        changed = ", ".join(f"{m} ({n} rows)" for m, n in lowered.most_common(10))
        notes.append(f"tags normalised (NFKC, lower case): {changed}")
    if merged:
        notes.append(f"{len(merged)} image(s) listed on several rows, their tags merged (e.g. {merged[0]})")
    if refused:
        notes.append(f"{len(refused)} line(s) refused and not read, the others were: " + "; ".join(refused[:5]))
    return LabelledSet(list(by_key), list(by_key.values()), notes=notes, refused=refused)


def _read_row(cells: list[str], normalised: Counter[str]) -> tuple[str, list[str]]:
    """One line's key and tags; ConfigError or PermanentError (a bad key) says why it cannot be read."""
    if len(cells) < 2:
        raise ConfigError(f"expected `image_id,tags`, got one field: {cells[0]!r}")
    key = validate_key(cells[0])
    tags: list[str] = []
    for raw in re.split(r"[\s,]+", " ".join(cells[1:])):
        if not raw:
            continue
        tag = normalise_tag(raw)
        if tag != raw:
            normalised[f"{raw} -> {tag}"] += 1
        tags.append(tag)
    return key, tags


def _rows(path: Path, fh: TextIO) -> Iterator[tuple[int, list[str]]]:
    """The CSV's rows, numbered from 1; a file that is not UTF-8 text (a spreadsheet's Latin-1 export) is a
    ConfigError saying so, not a UnicodeDecodeError (text is decoded ahead in blocks, so no line is named)."""
    try:
        yield from enumerate(csv.reader(fh), start=1)
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start : exc.start + 1].hex()
        why = f"{path} is not UTF-8 text (byte 0x{bad}): save it as UTF-8 (a spreadsheet's CSV UTF-8)"
        raise ConfigError(why) from None


def labels_from_db(session: Session) -> LabelledSet:
    """The decisions people made: every image with one, its accepted or hand-entered tags (an image whose
    suggestions were all rejected is labelled with none: a negative for every tag)."""
    rows = session.execute(
        select(Storage.url, Image.key, Tag.name, Label.positive)
        .join(Image, Image.id == Label.image_id)
        .join(Storage, Storage.id == Image.storage_id)
        .join(Tag, Tag.id == Label.tag_id)
        .order_by(Storage.url, Image.key, Tag.name)
    ).all()
    by_image: dict[tuple[str, str], list[str]] = {}
    for url, key, tag, positive in rows:
        tags = by_image.setdefault((url, key), [])
        if positive:
            tags.append(tag)
    if not by_image:
        raise ConfigError(
            "the database has no labels yet; review suggestions (`tagger serve`) or see `tagger labels --help`"
        )
    places = list(by_image)
    return LabelledSet([k for _, k in places], list(by_image.values()), [u for u, _ in places])


def decide(
    sessions: sessionmaker[Session],
    image_id: int,
    *,
    accepted: Sequence[str] = (),
    rejected: Sequence[str] = (),
    source: str = "manual",
    by: str | None = None,
) -> int:
    """Record a person's decisions on one image's tags (the latest decision per tag wins); returns how many."""
    with sessions() as session, session.begin():
        return _decide(session, {image_id: (list(accepted), list(rejected))}, source=source, by=by)


def decide_known(
    sessions: sessionmaker[Session], image_id: int, tag: str, *, positive: bool, by: str, also: Sequence[int] = ()
) -> None:
    """A person's decision from a page, in one transaction: only on a tag already in the vocabulary (a
    form never adds names) and an image already known; `also`, its near-duplicates, decided alike. Raises
    NotFoundError saying which is missing."""
    with sessions() as session, session.begin():
        if session.scalar(select(Tag.id).where(Tag.name == tag)) is None:
            raise NotFoundError(f"no tag {tag!r} in the vocabulary")
        if session.get(Image, image_id) is None:
            raise NotFoundError(f"no image with id {image_id}")
        decision = ([tag], []) if positive else ([], [tag])
        _decide(session, dict.fromkeys([image_id, *also], decision), source="accepted", by=by)


def add(
    sessions: sessionmaker[Session], key: str, tags: Sequence[str], *, storage_url: str, by: str | None = None
) -> int:
    """Confirm `tags` for the image `key` under `storage_url` (registered if new); returns how many labels."""
    key = validate_key(key)
    names = [normalise_tag(t) for t in tags]
    with sessions() as session, session.begin():
        image_id = image_ids(session, storage_id(session, canonical_url(storage_url)), [key])[key]
        return _decide(session, {image_id: (names, [])}, source="manual", by=by)


def accept(
    sessions: sessionmaker[Session], image_id: int, tags: Sequence[str] | None = None, *, by: str | None = None
) -> list[str]:
    """Accept the suggestions of the version that last tagged the image (all of them, or only `tags`).

    Raises NotFoundError, recording nothing, when a named tag is not among those suggestions (`add` confirms
    a tag the model did not suggest).
    """
    with sessions() as session, session.begin():
        version = session.scalar(select(Image.model_version_id).where(Image.id == image_id))
        query = (
            select(Tag.name)
            .join(Suggestion, Suggestion.tag_id == Tag.id)
            .where(Suggestion.image_id == image_id, Suggestion.model_version_id == version)
        )
        wanted = sorted({normalise_tag(t) for t in tags or ()})
        if wanted:
            query = query.where(Tag.name.in_(wanted))
        names = sorted(session.scalars(query))
        unsuggested = [t for t in wanted if t not in names]
        if unsuggested:
            raise NotFoundError(
                f"not suggested for this image: {', '.join(unsuggested)} (`tagger labels add` confirms a tag "
                "the model did not suggest)"
            )
        _decide(session, {image_id: (names, [])}, source="accepted", by=by)
        return names


def import_csv(sessions: sessionmaker[Session], path: Path, *, storage_url: str) -> tuple[LabelledSet, int]:
    """Load `image_id,tags` rows as hand-entered labels under `storage_url`; returns (what was read, labels)."""
    data = read_labels_csv(path)
    root = canonical_url(storage_url)
    written = 0
    for start in range(0, len(data.keys), 500):
        keys, tags = data.keys[start : start + 500], data.tags[start : start + 500]
        with sessions() as session, session.begin():
            ids = image_ids(session, storage_id(session, root), keys)
            written += _decide(session, {ids[k]: (t, []) for k, t in zip(keys, tags, strict=True)}, source="manual")
    return data, written


def stats(sessions: sessionmaker[Session]) -> tuple[int, list[tuple[str, int, int]]]:
    """(labelled images, [(tag, positives, negatives)])."""
    with sessions() as session:
        images = session.scalar(select(func.count(func.distinct(Label.image_id)))) or 0
        per_tag = session.execute(
            select(Tag.name, func.sum(Label.positive.cast(Integer)), func.count())
            .join(Label, Label.tag_id == Tag.id)
            .group_by(Tag.name)
            .order_by(Tag.name)
        ).all()
    return int(images), [(name, int(pos or 0), int(n) - int(pos or 0)) for name, pos, n in per_tag]


def _decide(
    session: Session, decisions: dict[int, tuple[list[str], list[str]]], *, source: str, by: str | None = None
) -> int:
    names = sorted({t for acc, rej in decisions.values() for t in (*acc, *rej)})
    if not names:
        return 0
    tag_ids = registry.ensure_tags(session, names)
    now = utcnow()
    rows = {
        (image_id, tag_ids[t]): {
            "image_id": image_id,
            "tag_id": tag_ids[t],
            "positive": positive,
            "source": source if positive else "rejected",
            "decided_by": by,
            "created_at": now,
        }
        for image_id, (acc, rej) in decisions.items()
        for positive, tags in ((True, acc), (False, rej))
        for t in tags
    }
    session.execute(
        upsert(
            session,
            Label,
            list(rows.values()),
            ["image_id", "tag_id"],
            ["positive", "source", "decided_by", "created_at"],
        )
    )
    return len(rows)


def decisions(sessions: sessionmaker[Session], image_ids: Sequence[int]) -> dict[tuple[int, str], bool]:
    """(image id, tag) -> accepted (True) or rejected (False), for the images given."""
    if not image_ids:
        return {}
    with sessions() as session:
        rows = session.execute(
            select(Label.image_id, Tag.name, Label.positive)
            .join(Tag, Tag.id == Label.tag_id)
            .where(Label.image_id.in_(list(image_ids)))
        ).all()
    return {(image_id, name): bool(positive) for image_id, name, positive in rows}


def accept_above(
    sessions: sessionmaker[Session],
    tag: str,
    min_probability: float,
    *,
    by: str | None = None,
    max_unfamiliarity: float | None = UNFAMILIAR,
) -> int:
    """Accept `tag` on every image the active version suggested it for at `min_probability` or more (what
    the tag's review page lists); how many. One range of the (version, tag, probability) index.

    Images someone already decided for this tag keep that decision (a bulk accept never overrules a person).
    Images less familiar than `max_unfamiliarity`% of the version's held-out stills are left for a person
    (a confident tag on an image unlike the training data is the confidence least worth trusting); None
    accepts them too. An image whose unfamiliarity is unknown (an older version) is accepted.
    """
    name = normalise_tag(tag)
    with sessions() as session, session.begin():
        tag_id = session.scalar(select(Tag.id).where(Tag.name == name))
        active = registry.active_or_none(session)
        if tag_id is None or active is None:
            return 0
        decided = select(Label.image_id).where(Label.tag_id == tag_id)
        query = select(Suggestion.image_id).where(
            Suggestion.model_version_id == active.id,
            Suggestion.tag_id == tag_id,
            Suggestion.probability >= min_probability,
            Suggestion.image_id.not_in(decided),
        )
        if max_unfamiliarity is not None:
            unfamiliar = select(Image.id).where(
                Image.model_version_id == active.id, Image.unfamiliarity > max_unfamiliarity
            )
            query = query.where(Suggestion.image_id.not_in(unfamiliar))
        ids = list(session.scalars(query))
        accepted, now = 0, utcnow()
        for start in range(0, len(ids), 1000):
            rows = [
                {
                    "image_id": i,
                    "tag_id": tag_id,
                    "positive": True,
                    "source": "accepted",
                    "decided_by": by,
                    "created_at": now,
                }
                for i in ids[start : start + 1000]
            ]
            # DO NOTHING, not an upsert: a decision someone made since the read above stands.
            stmt = insert_ignore(session, Label, rows, ["image_id", "tag_id"]).returning(Label.image_id)
            accepted += len(session.execute(stmt).all())  # the rows inserted: a conflict returns none
    return accepted


def label_suspects(sessions: sessionmaker[Session], version: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """The labels a version's training found most likely wrong (`tagger.training.suspects`), most suspect first,
    each with what a person decided since that version was registered (`decision`: True accepted, False
    rejected, None undecided): (version, entries). The active version's by default. A decision is a label, so
    the next `tagger train --labels db` trains on the correction."""
    with sessions() as session:
        row = registry.get(session, version) if version else registry.active(session)
        name, since, training = row.version, row.created_at, dict((row.meta or {}).get("training") or {})
        entries = [dict(e) for e in training.get("label_suspects") or [] if e.get("image_id") is not None]
        decided = {
            (image_id, tag): bool(positive)
            for image_id, tag, positive, at in session.execute(
                select(Label.image_id, Tag.name, Label.positive, Label.created_at)
                .join(Tag, Tag.id == Label.tag_id)
                .where(Label.image_id.in_(sorted({e["image_id"] for e in entries})))
            )
            if _aware(at) >= _aware(since)
        }
    for entry in entries:
        entry["decision"] = decided.get((entry["image_id"], entry["tag"]))
    return name, entries


def _aware(at: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC (`utcnow`)."""
    return at if at.tzinfo else at.replace(tzinfo=UTC)
