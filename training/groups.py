"""Groups for a held-out split that cannot leak: near-identical stills (and, with `--group-by`, what people
know belongs together, such as a film's folder) land on one side of the split, never on both.

Near-duplicates are found by a perceptual fingerprint computed here from every labelled image (a 16x16
colour thumbnail, each channel's mean taken off and the whole scaled to length 1, so a re-encode, a
resize, a brightness or contrast change barely move it): pairs at least FINGERPRINT_SIMILARITY alike. On
request (`--group-embeddings`) the pairs the active model's stored embeddings find are joined too (at
TAGGER_DUPLICATE_THRESHOLD, as `tagger duplicates`). Groups are the connected components of those pairs
and of the `--group-by` keys; the split then hashes each group's name instead of each key.

Why the fingerprint by default and the embeddings only on request: a model's embedding is only as
specific as what it was trained to see. On generated bursts (BENCHMARKS.md) a model trained from random
weights on eight tags embeds unrelated stills with the same tags more alike than some frames of one shot,
and an untrained model embeds every still alike: joined, its pairs would make the whole archive one group
and leave nothing to hold out. The fingerprint needs no model, so labels from a CSV before any tagging
are grouped the same way.

Why this and not a perceptual hash such as `imagehash`'s dHash or pHash: on generated bursts with known
groups (BENCHMARKS.md) the thumbnail found more of the true pairs at a better precision than both (dHash's
bits are noise on flat backgrounds), in a dozen lines over Pillow and NumPy, with no new dependency.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.db.schema import Embedding, Image, Storage
from tagger.db.vectors import as_array, exact_pairs
from tagger.duplicates import connected_groups
from tagger.errors import ConfigError, NoActiveModelError, PermanentError
from tagger.labels import LabelledSet
from tagger.storage import open_storage

# Two stills whose fingerprints are at least this similar are near-duplicates (BENCHMARKS.md: on generated
# bursts, 85% of the pairs it joins are true and it joins 67% of the true pairs; lower joins unrelated stills).
FINGERPRINT_SIMILARITY = 0.90


@dataclass(frozen=True)
class Grouping:
    """The labelled set with each image's group, the near-duplicate pairs found and where they came from."""

    labelled: LabelledSet
    pairs: list[tuple[str, str]]
    source: str


def fingerprint(data: bytes) -> np.ndarray:
    """A still's perceptual fingerprint: its 16x16 colour thumbnail, channel means removed, length 1 (768
    numbers; the dot product of two is their similarity). PermanentError for bytes Pillow cannot read."""
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            img.draft("RGB", (64, 64))  # a JPEG decodes at a fraction of its size: the thumbnail is 16x16
            pixels = np.asarray(img.convert("RGB").resize((16, 16), PILImage.Resampling.BOX), dtype=np.float32)
    except (OSError, ValueError, PILImage.DecompressionBombError) as exc:
        raise PermanentError(f"not an image Pillow reads: {exc}") from None
    flat = pixels.reshape(-1, 3)
    flat = flat - flat.mean(axis=0)
    norm = float(np.linalg.norm(flat))
    return (flat / norm).ravel() if norm > 0 else np.zeros(flat.size, dtype=np.float32)


def stored_vectors(session: Session, labelled: LabelledSet) -> tuple[str, list[int], np.ndarray] | None:
    """(the active version, the indices of the labelled images it embedded, their vectors), or None without an
    active version."""
    try:
        active = registry.active(session)
    except NoActiveModelError:
        return None
    places = list(zip(labelled.storage_urls, labelled.keys, strict=True))
    found: dict[tuple[str, str], np.ndarray] = {}
    for start in range(0, len(places), 500):
        rows = session.execute(
            select(Storage.url, Image.key, Embedding.embedding)
            .join(Image, Image.storage_id == Storage.id)
            .join(Embedding, Embedding.image_id == Image.id)
            .where(
                Embedding.model_version_id == active.id,
                tuple_(Storage.url, Image.key).in_(places[start : start + 500]),
            )
        )
        found.update({(url, key): as_array(raw) for url, key, raw in rows})
    have = [i for i, place in enumerate(places) if place in found]
    vectors = np.stack([found[places[i]] for i in have]) if have else np.zeros((0, 1), dtype=np.float32)
    return active.version, have, vectors


def fingerprints(labelled: LabelledSet, *, threads: int = 8) -> np.ndarray:
    """Each labelled image's fingerprint, read from its storage (zeros, like nothing, where it cannot be read)."""
    storages = {url: open_storage(url) for url in dict.fromkeys(labelled.storage_urls)}

    def one(index: int) -> np.ndarray:
        try:
            return fingerprint(storages[labelled.storage_urls[index]].read(labelled.keys[index]))
        except PermanentError:
            return np.zeros(768, dtype=np.float32)

    with ThreadPoolExecutor(threads) as pool:
        found = list(pool.map(one, range(len(labelled.keys))))
    return np.stack(found) if found else np.zeros((0, 768), dtype=np.float32)


def group_labelled(
    labelled: LabelledSet,
    *,
    sessions: sessionmaker[Session] | None,
    threshold: float,
    group_by: str | None = None,
) -> Grouping:
    """`labelled` with each image's group: near-duplicates by fingerprint joined, and with `sessions` those
    the active model's stored embeddings find at `threshold` too; with `group_by` (a regular expression; its
    first group, else the whole match, names the group) the keys it names alike joined as well."""
    pairs = list(exact_pairs(fingerprints(labelled), FINGERPRINT_SIMILARITY))
    source = f"fingerprints (16x16 thumbnails) at similarity {FINGERPRINT_SIMILARITY:g} or more"
    stored = None
    if sessions is not None:
        with sessions() as session:
            stored = stored_vectors(session, labelled)
    if stored is not None and stored[1]:
        version, have, vectors = stored
        pairs += [(have[a], have[b], s) for a, b, s in exact_pairs(vectors, threshold)]
        pairs = list({(a, b): (a, b, s) for a, b, s in pairs}.values())  # a pair both found once
        source += f", and the embeddings of {version} ({len(have)} of the images) at {threshold:g} or more"
    links = list(pairs)
    if group_by:
        links += _pattern_links(labelled.keys, group_by)
    name = list(labelled.keys)  # a key in no pair is its own group
    for ids, _ in connected_groups(links):
        for i in ids:
            name[i] = labelled.keys[ids[0]]
    keys = labelled.keys
    return Grouping(dataclasses.replace(labelled, groups=name), [(keys[i], keys[j]) for i, j, _ in pairs], source)


def _pattern_links(keys: Sequence[str], group_by: str) -> list[tuple[int, int, float]]:
    try:
        pattern = re.compile(group_by)
    except re.error as exc:
        raise ConfigError(f"--group-by {group_by!r} is not a regular expression: {exc}") from None
    first: dict[str, int] = {}
    links = []
    for i, key in enumerate(keys):
        match = pattern.search(key)
        if match is None:
            continue
        name = match.group(1) if pattern.groups else match.group(0)
        links.append((first.setdefault(name, i), i, 1.0))
    return [link for link in links if link[0] != link[1]]


def crossing(pairs: Sequence[tuple[str, str]], held_out: Sequence[str]) -> int:
    """How many near-duplicate pairs have one still held out and the other trained on."""
    valid = set(held_out)
    return sum((a in valid) != (b in valid) for a, b in pairs)
