"""Model artifacts: safetensors weights plus JSON metadata, checksummed, never pickled.

Layout in the model store: <version>/model.safetensors and <version>/model.json.
The database row holds the sha256 of the weights: a tampered store is refused on load.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict

from torch import nn

from tagger.errors import ArtifactError
from tagger.model.meta import METADATA, WEIGHTS, ArtifactMeta
from tagger.storage import Storage


def save(model: nn.Module, meta: ArtifactMeta, store: Storage) -> ArtifactMeta:
    """Write weights then metadata (with the weights' sha256) under meta.version; returns final meta.

    Raises ArtifactError, before writing anything, for metadata a worker's load would refuse.
    """
    from safetensors.torch import save

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    blob = save(state, metadata={"version": meta.version, "arch": meta.arch})
    digest = hashlib.sha256(blob).hexdigest()
    final = ArtifactMeta(**{**asdict(meta), "weights_sha256": digest})
    final.check()  # what a worker's load would refuse is never written, so never registered or activated
    store.write(f"{meta.version}/{WEIGHTS}", blob)
    store.write(f"{meta.version}/{METADATA}", final.to_json().encode())
    return final


def read_meta(store: Storage, version: str) -> ArtifactMeta:
    return ArtifactMeta.from_json(store.read(f"{version}/{METADATA}").decode())


def load(store: Storage, version: str, *, expected_sha256: str) -> tuple[nn.Module, ArtifactMeta]:
    """Load and validate: checksum, safetensors format, tensor names and shapes, vocabulary."""
    from safetensors.torch import load as load_bytes

    from tagger.model.architectures import build_model

    meta = read_meta(store, version)
    if meta.version != version:
        raise ArtifactError(f"metadata names version {meta.version!r}, expected {version!r}")
    blob = store.read(f"{version}/{WEIGHTS}")
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected_sha256 or digest != meta.weights_sha256:
        raise ArtifactError(f"checksum mismatch for {version}: file {digest[:12]}, registered {expected_sha256[:12]}")
    try:
        state = load_bytes(blob)
    except Exception as exc:  # safetensors raises its own Rust-side error type
        raise ArtifactError(f"{version}: weights are not a valid safetensors file: {exc}") from exc
    model = build_model(meta.arch, len(meta.tags))
    expected = model.state_dict()
    missing = set(expected) - set(state)
    unexpected = set(state) - set(expected)
    if missing or unexpected:
        raise ArtifactError(
            f"{version}: tensors do not match {meta.arch}: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ArtifactError(
                f"{version}: {name} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta
