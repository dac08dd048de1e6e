"""How unfamiliar an image looks to a model: JointEnergy over its tag logits, as a percentile of the version's
own held-out stills.

JointEnergy (Wang et al., NeurIPS 2021, "Can multi-label classification networks know what they don't
know?") is the sum over tags of log(1 + e^logit): high where the network is sure of some tags, low where
every tag's logit is low, as on images unlike anything it learned. It comes from the logits the forward
pass already made (`predict.joint_energy`, in `predict.infer`), one vectorised softplus and sum per batch.

A raw energy means nothing to a person, and differs by version; so training keeps the held-out stills'
energies as quantiles in the artifact's metadata (`ArtifactMeta.energy_quantiles`), and each image's energy
becomes its *unfamiliarity*: the percentage of those held-out stills more familiar than it (0 to 100).
An image as familiar as the held-out stills is above 99 one time in a hundred.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the read side (results, the web pages) words a stored percentile without torch or numpy
    import numpy as np

QUANTILES = 101  # the 0th..100th percentiles of the held-out energies: about 1 KB of JSON per artifact
UNFAMILIAR = 99.0  # the percentile above which an image counts as unfamiliar (the per-job drift figure)


def energy_quantiles(energy: np.ndarray, count: int = QUANTILES) -> list[float]:
    """The held-out energies' 0th..100th percentiles, what an artifact keeps to place a new image among them."""
    import numpy as np

    if len(energy) == 0:
        return []
    return [round(float(v), 5) for v in np.quantile(np.asarray(energy, dtype=np.float64), np.linspace(0, 1, count))]


def unfamiliarity(energy: np.ndarray, quantiles: Sequence[float]) -> np.ndarray | None:
    """Each image's percentage (0..100, one decimal) of held-out stills more familiar than it: lower energy
    is less familiar. None when the version keeps no quantiles (trained before they were recorded)."""
    import numpy as np

    if len(quantiles) < 2:
        return None
    q = np.asarray(quantiles, dtype=np.float64)
    below = np.interp(np.asarray(energy, dtype=np.float64), q, np.linspace(0.0, 100.0, len(q)))
    return np.round(100.0 - below, 1)


def in_words(percent: float | None) -> str:
    """ "less familiar than 99% of the held-out stills", for the results, the API and the image page."""
    if percent is None:
        return "familiarity unknown (its model version keeps no record of its held-out stills)"
    return f"less familiar than {percent:.0f}% of the held-out stills"
