"""Read side: suggestions for an image, and exports of all suggestions."""

from __future__ import annotations

import csv
import json
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tagger.db.schema import Image, ModelVersion, Suggestion, Tag


def suggestions_for(sessions: sessionmaker[Session], key: str, *, all_versions: bool = False) -> list[dict[str, Any]]:
    """Suggested tags of one image, best first; by default only from the active model."""
    query = (
        select(Tag.name, Suggestion.probability, ModelVersion.version)
        .join(Image, Image.id == Suggestion.image_id)
        .join(Tag, Tag.id == Suggestion.tag_id)
        .join(ModelVersion, ModelVersion.id == Suggestion.model_version_id)
        .where(Image.key == key)
        .order_by(Suggestion.probability.desc())
    )
    if not all_versions:
        query = query.where(ModelVersion.is_active.is_(True))
    with sessions() as session:
        return [
            {"tag": tag, "probability": round(p, 4), "model_version": v} for tag, p, v in session.execute(query).all()
        ]


def export(
    sessions: sessionmaker[Session], out: TextIO, *, fmt: str, tag: str | None = None, min_probability: float = 0.0
) -> int:
    """Stream every suggestion of the active model (uses the (tag, probability) index when filtered)."""
    query = (
        select(Image.key, Tag.name, Suggestion.probability, ModelVersion.version)
        .join(Image, Image.id == Suggestion.image_id)
        .join(Tag, Tag.id == Suggestion.tag_id)
        .join(ModelVersion, ModelVersion.id == Suggestion.model_version_id)
        .where(ModelVersion.is_active.is_(True), Suggestion.probability >= min_probability)
        .order_by(Image.key, Suggestion.probability.desc())
    )
    if tag:
        query = query.where(Tag.name == tag)
    writer = csv.writer(out) if fmt == "csv" else None
    if writer:
        writer.writerow(["key", "tag", "probability", "model_version"])
    n = 0
    with sessions() as session:
        for key, name, p, version in session.execute(query.execution_options(yield_per=1000)):
            if writer:
                writer.writerow([key, name, f"{p:.4f}", version])
            else:
                out.write(
                    json.dumps({"key": key, "tag": name, "probability": round(p, 4), "model_version": version}) + "\n"
                )
            n += 1
    return n
