"""The unfamiliarity score's math: JointEnergy of the logits and its percentile among the held-out stills."""

from __future__ import annotations

import math

import numpy as np
import torch

from tagger.model.familiarity import energy_quantiles, in_words, unfamiliarity
from tagger.model.predict import joint_energy


def test_joint_energy_is_the_sum_over_tags_of_log_one_plus_e_to_the_logit() -> None:
    logits = torch.tensor([[0.0, 2.0, -3.0], [40.0, -40.0, 1.5]], dtype=torch.bfloat16)
    by_hand = [sum(math.log1p(math.exp(float(x))) for x in row) for row in logits.float()]
    assert joint_energy(logits).dtype == torch.float32  # bf16 logits (CUDA) are summed in float32
    assert torch.allclose(joint_energy(logits), torch.tensor(by_hand), rtol=1e-6)


def test_unfamiliarity_is_the_share_of_held_out_stills_with_more_energy() -> None:
    held_out = np.random.default_rng(0).normal(30.0, 4.0, size=2000)
    quantiles = energy_quantiles(held_out)
    assert len(quantiles) == 101 and quantiles == sorted(quantiles)
    fresh = np.random.default_rng(1).normal(30.0, 4.0, size=4000)  # more images like the held-out ones
    scores = unfamiliarity(fresh, quantiles)
    assert scores is not None
    assert abs(float((scores > 99).mean()) - 0.01) < 0.006  # about 1 in 100 is above the 99th percentile
    assert abs(float(np.median(scores)) - 50) < 3
    out_of_domain = unfamiliarity(np.array([5.0, 60.0]), quantiles)  # far below all energies, far above
    assert out_of_domain is not None and out_of_domain.tolist() == [100.0, 0.0]
    assert unfamiliarity(fresh, []) is None  # a version trained before the record: unknown, not 0
    assert in_words(99.4) == "less familiar than 99% of the held-out stills"
    assert "unknown" in in_words(None)
