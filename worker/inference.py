"""What the worker does around the model: take turns on the device, keep the tags above threshold."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from tagger.worker.sink import TaggedRows

# One per process: batches running in task threads take turns on the device (decode, then
# inference), while their fetching, CPU decoding and database writes overlap outside it.
device_lock = threading.Lock()


def suggestion_rows(
    probs: torch.Tensor,
    thresholds: torch.Tensor,
    image_ids: list[int],
    tag_ids: list[int],
    embeddings: torch.Tensor | None = None,
    energy: torch.Tensor | None = None,
    energy_quantiles: Sequence[float] = (),
) -> TaggedRows:
    """The sink's rows for one batch, straight from the tensors: every (image, tag, probability) at or
    above the tag's threshold, each image's embedding, and how unfamiliar it looked. `probs` is N x tags
    (N = len(image_ids)); `thresholds` has one per tag; `embeddings`, N x width float16, and `energy`, N
    JointEnergy scores, come with them from `infer`; `energy_quantiles` are the version's held-out ones."""
    from tagger.model.familiarity import unfamiliarity
    from tagger.worker.sink import TaggedRows

    rows, cols = (probs >= thresholds.unsqueeze(0)).nonzero(as_tuple=True)
    images = torch.tensor(image_ids, dtype=torch.int64)[rows]
    tags = torch.tensor(tag_ids, dtype=torch.int64)[cols]
    vectors = embeddings.numpy() if embeddings is not None else None
    unfamiliar = unfamiliarity(energy.numpy(), energy_quantiles) if energy is not None else None
    return TaggedRows(
        list(image_ids),
        images.tolist(),
        tags.tolist(),
        probs[rows, cols].double().tolist(),
        vectors=vectors,
        unfamiliarity=unfamiliar,
    )
