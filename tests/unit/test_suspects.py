"""Confident learning on out-of-sample probabilities: the labels most likely wrong come first."""

from __future__ import annotations

import torch

from tagger.training.suspects import rank, suspects


def test_a_label_the_model_confidently_contradicts_is_a_suspect_and_an_agreed_one_is_not() -> None:
    # One tag: labelled positives average P = 0.825, labelled negatives P(no) = 0.6375: the two thresholds.
    probs = torch.tensor([[0.9], [0.75], [0.1], [0.2], [0.85], [0.3]])
    labels = torch.tensor([[1.0], [1.0], [0.0], [0.0], [0.0], [0.0]])
    rows, cols, scores = rank(probs, labels)
    assert rows[0] == 4 and cols[0] == 0 and scores[0] > 0  # labelled "no" at P 0.85 >= 0.825: flagged first
    assert (scores[1:] <= 0).all()  # the rest agree with their labels well enough: ranked by self-confidence
    assert rows[1] == 5  # P(no) 0.7, the least self-confident after it
    kept = suspects(probs, labels, ["t"], [("file:///a", f"{i}.jpg") for i in range(6)], count=2)
    assert [(k["key"], k["labelled"], k["confident"]) for k in kept] == [
        ("4.jpg", False, True),
        ("5.jpg", False, False),
    ]


def test_most_flipped_labels_rank_in_the_top_tenth() -> None:
    g = torch.Generator().manual_seed(0)
    n, tags = 1000, 8
    truth = torch.rand(n, tags, generator=g) < 0.3
    probs = torch.sigmoid(torch.where(truth, 2.0, -2.0) + torch.randn(n, tags, generator=g))  # a decent model
    labels = truth.clone()
    flipped, which = torch.randperm(n, generator=g)[: n // 20], torch.randint(0, tags, (n // 20,), generator=g)
    labels[flipped, which] = ~labels[flipped, which]  # 5% of the images: one label flipped
    # Two more tags the model has not learnt (the same middling probability whatever the label): their labels
    # must not crowd the flipped ones out of the top.
    unlearnt = torch.rand(n, 2, generator=g) < 0.3
    probs = torch.cat([probs, torch.sigmoid(-1 + 0.5 * torch.randn(n, 2, generator=g))], dim=1)
    labels = torch.cat([labels, unlearnt], dim=1)
    rows, cols, _ = rank(probs, labels.float())
    top = set(zip(rows[: n // 10].tolist(), cols[: n // 10].tolist(), strict=True))
    found = sum((r, c) in top for r, c in zip(flipped.tolist(), which.tolist(), strict=True))
    assert found / len(flipped) >= 0.8
