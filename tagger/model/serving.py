"""Load one model version and prove it serves: the one path for workers, activation and the promotion gate.

Loading checks the checksum, every tensor name and shape and the tag vocabulary, puts the model on
its device in the serving precision (`predict.prepare`) and runs a smoke forward pass. A version
that fails any of it raises ArtifactError and is never served.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tagger.errors import ArtifactError
from tagger.model.architectures import SplitAtHead
from tagger.model.artifact import load
from tagger.model.meta import ArtifactMeta
from tagger.model.predict import Outputs, compile_for_serving, infer, prepare
from tagger.model.preprocess import DecodeLimits, Normalise, Preprocess
from tagger.storage import Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingModel:
    """Everything one batch needs, captured together so a batch never mixes versions."""

    version_id: int
    version: str
    meta: ArtifactMeta
    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    preprocess: Preprocess
    normalise: Normalise
    thresholds: torch.Tensor  # one per tag, in output order
    tag_ids: list[int]  # database ids of the tags, in output order
    embedding_dim: int  # the width of the head's input: what an image's embedding holds
    fixed_batch: int | None = None  # a compiled model's one batch shape

    def infer(self, batch: torch.Tensor) -> Outputs:
        """N x 3 x size x size uint8 -> N x tags float32 probabilities and N x embedding_dim float16
        L2-normalised embeddings, on the host."""
        return infer(
            self.model, batch, normalise=self.normalise, device=self.device, dtype=self.dtype, pad_to=self.fixed_batch
        )

    def predict(self, batch: torch.Tensor) -> torch.Tensor:
        """N x 3 x size x size uint8 -> N x tags float32 probabilities on the host."""
        return self.infer(batch).probs


@dataclass(frozen=True)
class ServingOptions:
    """How any version is served: decode limits, compilation and a threshold override."""

    threshold_override: float | None = None
    limits: DecodeLimits = DecodeLimits()
    compile_batch: int | None = None  # torch.compile for this batch size; None: eager


DEFAULT_OPTIONS = ServingOptions()


def load_serving(
    store: Storage,
    *,
    version_id: int,
    version: str,
    sha256: str,
    expected_tags: list[str] | None,
    tag_ids: Callable[[list[str]], list[int]],
    device: torch.device,
    options: ServingOptions = DEFAULT_OPTIONS,
) -> ServingModel:
    """Load one version and prove it works, or raise ArtifactError; the caller's current model is untouched."""
    model, meta = load(store, version, expected_sha256=sha256)
    if expected_tags is not None and list(expected_tags) != list(meta.tags):
        raise ArtifactError(f"{version}: artifact tag vocabulary differs from the registered one")
    split = SplitAtHead(model)  # one forward pass gives the suggestions and the embedding
    model, dtype = prepare(split, device)
    normalise = Normalise(meta.mean, meta.std)
    smoke = torch.zeros((1, 3, meta.input_size, meta.input_size), dtype=torch.uint8)
    out = infer(model, smoke, normalise=normalise, device=device, dtype=dtype)
    if out.probs.shape != (1, len(meta.tags)) or not torch.isfinite(out.probs).all():
        raise ArtifactError(f"{version}: smoke forward pass gave {tuple(out.probs.shape)} or non-finite output")
    if out.embeddings is None or out.embeddings.shape != (1, split.features):
        raise ArtifactError(f"{version}: the head's input is not one {split.features}-wide vector per image")
    fixed_batch = None
    if options.compile_batch:
        try:
            model = compile_for_serving(
                model,
                batch_size=options.compile_batch,
                input_size=meta.input_size,
                normalise=normalise,
                device=device,
                dtype=dtype,
            )
            fixed_batch = options.compile_batch
        except Exception:  # the artifact is fine; this machine's compiler is not: serve it eager
            log.exception("%s: torch.compile failed; serving the eager model", version)
    return ServingModel(
        version_id=version_id,
        version=version,
        meta=meta,
        model=model,
        device=device,
        dtype=dtype,
        preprocess=Preprocess(meta.input_size, limits=options.limits),
        normalise=normalise,
        thresholds=torch.tensor(meta.thresholds(options.threshold_override)),
        tag_ids=tag_ids(meta.tags),
        embedding_dim=split.features,
        fixed_batch=fixed_batch,
    )
