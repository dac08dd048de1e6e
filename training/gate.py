"""The promotion gate: a candidate replaces the active model only if it is at least as good.

Both models are measured on the candidate's held-out split (the same images), with the
metric fastai reports: samples-averaged F2 at the global threshold. Calibrated thresholds
are left out of the comparison because the candidate's were fitted on that very split.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
from sqlalchemy.orm import Session, sessionmaker

from tagger import artifact, registry
from tagger.errors import ArtifactError
from tagger.preprocess import Normalise, Preprocess
from tagger.storage import Storage
from training.data import DecodedStills, LabelledSet
from training.metrics import fbeta_samples, mean_average_precision

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

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def compare(
    sessions: sessionmaker[Session],
    model_store: Storage,
    *,
    images: Storage,
    valid_set: LabelledSet,
    valid: DecodedStills,
    vocabulary: list[str],
    candidate_probs: torch.Tensor,
    threshold: float,
    margin: float,
    device: torch.device,
) -> GateResult:
    from training.train import predict_all

    targets = valid.targets
    cand_f2 = fbeta_samples(candidate_probs, targets, threshold)
    cand_map = mean_average_precision(candidate_probs, targets)
    with sessions() as session:
        row = registry.active_or_none(session)
        if row is None:
            return GateResult(True, "no model is active yet", cand_f2, candidate_map=cand_map)
        version, sha = row.version, row.sha256
    try:
        model, meta = artifact.load(model_store, version, expected_sha256=sha)
    except ArtifactError as exc:
        log.warning("cannot load the active model %s to compare: %s", version, exc)
        return GateResult(True, f"active model {version} cannot be loaded: {exc}", cand_f2, version)
    data = valid  # decoded once: read again only if the active model wants another input size
    if meta.input_size != valid.pixels.shape[-1]:
        data = DecodedStills(images, valid_set, vocabulary, Preprocess(meta.input_size), desc=f"decode for {version}")
    active_probs, active_targets = predict_all(model.to(device), data, device, Normalise(meta.mean, meta.std))
    # Score the active model over the candidate's vocabulary; a tag it does not know scores 0.
    columns = {t: i for i, t in enumerate(meta.tags)}
    mapped = torch.zeros_like(active_targets)
    for j, tag in enumerate(vocabulary):
        if tag in columns:
            mapped[:, j] = active_probs[:, columns[tag]]
    active_f2 = fbeta_samples(mapped, active_targets, threshold)
    active_map = mean_average_precision(mapped, active_targets)
    promote = cand_f2 >= active_f2 - margin
    verdict = "at least as good as" if promote else "worse than"
    return GateResult(
        promote,
        f"F2 {cand_f2:.4f} is {verdict} active {version}'s {active_f2:.4f} (margin {margin})",
        cand_f2,
        version,
        active_f2,
        cand_map,
        active_map,
        margin,
    )
