"""The worker's tasks without a broker: the failure classes a write credits."""

from __future__ import annotations


def test_failure_classes_are_credited_to_the_refusals_the_write_moved() -> None:
    """Two refusals of different classes, of which an earlier delivery wrote the first: only the second's
    class is counted (crediting the first `failed` refusals would count the wrong class)."""
    from prometheus_client import REGISTRY

    from tagger.worker.loader import Failed
    from tagger.worker.tasks import credit_failures

    def count(kind: str) -> float:
        return REGISTRY.get_sample_value("tagger_image_failures_total", {"reason": kind}) or 0.0

    before = {kind: count(kind) for kind in ("image", "storage")}
    refusals = [Failed(1, "corrupt", kind="image"), Failed(2, "no such key", kind="storage")]
    credit_failures(refusals, frozenset({2}))
    assert (count("image") - before["image"], count("storage") - before["storage"]) == (0, 1)
