"""The promotion gate: a candidate replaces the active model only if it is at least as good.

Both models are measured on the candidate's held-out split (the same images), each scored as a
worker serves it (`tagger.model.predict`), with the metric fastai reports: samples-averaged F2 at
the global threshold, over the tags both models know. Calibrated thresholds are left out of the
comparison because the candidate's were fitted on that very split.

A vocabulary change is explicit: a candidate that drops a tag the active model suggests is not promoted
(its verdict names the tags; `--force` promotes anyway), and tags it adds are named as not compared.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
from sqlalchemy.orm import Session, sessionmaker

from tagger import registry
from tagger.errors import TaggerError
from tagger.model.serving import load_serving
from tagger.storage import open_storage
from tagger.training.data import DecodedStills
from tagger.training.evaluate import CHUNK, Candidate
from tagger.training.metrics import fbeta_samples, mean_average_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateResult:
    promote: bool
    reason: str
    candidate_f2: float
    active_version: str | None = None
    active_f2: float | None = None
    candidate_map: float | None = None
    active_map: float | None = None
    margin: float = 0.0
    dropped: tuple[str, ...] = ()  # tags the active model suggests and the candidate does not
    added: tuple[str, ...] = ()  # tags the candidate suggests and the active model does not (not compared)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def compare(
    sessions: sessionmaker[Session],
    candidate: Candidate,
    *,
    threshold: float,
    margin: float,
    device: torch.device,
) -> GateResult:
    """Score the active model on the candidate's held-out stills, as a worker serves it, and compare F2."""
    targets = candidate.valid.targets
    cand_f2 = fbeta_samples(candidate.probs, targets, threshold)
    cand_map = mean_average_precision(candidate.probs, targets)
    with sessions() as session:
        row = registry.active_or_none(session)
        if row is None:
            return GateResult(True, "no model is active yet", cand_f2, candidate_map=cand_map)
        version_id, version, sha, tags = row.id, row.version, row.sha256, row.tags or None
        uri = row.uri
    try:
        active = load_serving(
            open_storage(registry.store_url(version, uri)),
            version_id=version_id,
            version=version,
            sha256=sha,
            expected_tags=tags,
            tag_ids=lambda names: list(range(len(names))),
            device=device,
        )
    except TaggerError as exc:  # a broken or missing artifact, wherever it was stored
        log.warning("cannot load the active model %s to compare: %s", version, exc)
        return GateResult(True, f"active model {version} cannot be loaded: {exc}", cand_f2, version)
    meta = active.meta
    data = candidate.valid  # decoded once: read again only if the active model wants another input size
    if meta.input_size != data.pixels.shape[-1]:
        data = DecodedStills(candidate.valid_set, candidate.meta.tags, active.preprocess, desc=f"decode for {version}")
    active_probs = torch.cat([active.predict(data.pixels[i : i + CHUNK]) for i in range(0, len(data), CHUNK)])
    # Compared on the tags both know, the same columns of the same images for both models.
    columns = {t: i for i, t in enumerate(meta.tags)}
    shared = [j for j, tag in enumerate(candidate.meta.tags) if tag in columns]
    dropped = tuple(t for t in meta.tags if t not in set(candidate.meta.tags))
    added = tuple(t for t in candidate.meta.tags if t not in columns)
    if not shared:
        reason = f"the candidate shares no tag with active {version}: nothing to compare (--force promotes it)"
        return GateResult(False, reason, cand_f2, version, dropped=dropped, added=added)
    targets = data.targets[:, shared]
    cand_f2 = fbeta_samples(candidate.probs[:, shared], candidate.valid.targets[:, shared], threshold)
    cand_map = mean_average_precision(candidate.probs[:, shared], candidate.valid.targets[:, shared])
    mapped = active_probs[:, [columns[candidate.meta.tags[j]] for j in shared]]
    active_f2 = fbeta_samples(mapped, targets, threshold)
    active_map = mean_average_precision(mapped, targets)
    better = cand_f2 >= active_f2 - margin
    verdict = "at least as good as" if better else "worse than"
    reason = f"F2 {cand_f2:.4f} is {verdict} active {version}'s {active_f2:.4f} (margin {margin}"
    reason += f", on the {len(shared)} tags both know)" if dropped or added else ")"
    if added:
        reason += f"; it adds {', '.join(added)} (not compared: {version} does not know them)"
    if dropped:
        reason += (
            f"; it drops {', '.join(dropped)}, which {version} suggests: not promoted, since no image would get "
            "those tags again (label images with them, or --force to promote without them)"
        )
    return GateResult(
        better and not dropped, reason, cand_f2, version, active_f2, cand_map, active_map, margin, dropped, added
    )
