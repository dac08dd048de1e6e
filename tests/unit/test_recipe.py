"""The training recipe's pure parts: schedules, layer groups, calibration, AP, augmentation, checkpoints, lr finder."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from tagger.model.architectures import build_model, head_parameters
from tagger.training import checkpoint
from tagger.training.augment import Augment
from tagger.training.calibrate import calibrate, describe, fit_global, fit_per_tag, halves
from tagger.training.evaluate import evaluate
from tagger.training.lr_find import lr_find
from tagger.training.metrics import average_precision, fbeta_samples
from tagger.training.schedule import discriminative, layer_groups, one_cycle, set_frozen


def test_one_cycle_warms_up_then_anneals() -> None:
    total = 100
    values = [one_cycle(s, total) for s in range(total)]
    assert values[0] == pytest.approx(1 / 25)
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 25
    assert values[-1] < 1e-3 and values == sorted(values[:26]) + values[26:]


def test_discriminative_rates_rise_geometrically_to_the_head() -> None:
    assert discriminative(1e-3, 3, 100) == pytest.approx([1e-5, 1e-4, 1e-3])
    assert discriminative(1e-3, 1) == [1e-3]


def test_layer_groups_partition_a_resnet_and_freezing_keeps_batchnorm_training() -> None:
    model = build_model("resnet18", 5)
    groups = layer_groups(model)
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in groups[-1]} == {id(p) for p in head_parameters(model)}
    set_frozen(model, groups, True)
    assert not model.layer1[0].conv1.weight.requires_grad
    assert model.layer1[0].bn1.weight.requires_grad and model.fc.weight.requires_grad
    set_frozen(model, groups, False)
    assert all(p.requires_grad for p in model.parameters())


def _noisy_held_out(n: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    """Tag "a" is separable only above 0.45 (a per-tag threshold helps); "b" and "c" are noise (any threshold
    fitted on them is luck, which scoring on the fitting images would report as skill)."""
    g = torch.Generator().manual_seed(0)
    targets = (torch.rand(n, 3, generator=g) < 0.4).float()
    probs = torch.rand(n, 3, generator=g) * 0.6
    probs[:, 0] = torch.where(
        targets[:, 0].bool(), 0.5 + 0.4 * torch.rand(n, generator=g), 0.45 * torch.rand(n, generator=g)
    )
    return probs, targets


def test_the_reported_calibrated_f2_is_the_cross_fitted_one_not_the_in_sample_one() -> None:
    probs, targets = _noisy_held_out()
    tags = ["a", "b", "c"]
    final, fitted = evaluate(probs, targets, tags, argparse.Namespace(threshold=0.2, no_calibrate=False))
    kept = set(final["calibration"]["per_tag_kept"])
    assert "a" in kept and final["calibration"]["chosen"] == "per-tag"

    def thresholds_fitted_on(rows: torch.Tensor) -> torch.Tensor:
        g = fit_global(probs[rows], targets[rows], default=0.2)
        per = fit_per_tag(probs[rows], targets[rows], g)
        return torch.tensor([float(per[i]) if t in kept else g for i, t in enumerate(tags)])

    a, b = halves(len(probs))
    crossfitted = (
        fbeta_samples(probs[b], targets[b], thresholds_fitted_on(a))
        + fbeta_samples(probs[a], targets[a], thresholds_fitted_on(b))
    ) / 2
    served = torch.tensor([fitted.tag_thresholds.get(t, fitted.threshold) for t in tags])
    in_sample = fbeta_samples(probs, targets, served)
    assert final["f2_calibrated"] == pytest.approx(crossfitted, abs=1e-9)
    assert in_sample - final["f2_calibrated"] > 0.005  # fitting and scoring on the same images flatters
    assert final["f2_calibrated"] > final["f2"]  # and the fitted thresholds still beat 0.2 where it counts


def test_per_tag_thresholds_are_kept_only_where_they_beat_the_global_one_and_rare_tags_shrink() -> None:
    probs, targets = _noisy_held_out()
    fitted = calibrate(probs, targets, ["a", "b", "c"])
    report = fitted.report()
    assert set(report["per_tag_kept"]) == {"a"} and all(g > 0 for g in report["per_tag_kept"].values())
    assert all(g <= 0 for g in report["per_tag_dropped"].values())
    assert set(fitted.tag_thresholds) == {"a"} and fitted.tag_thresholds["a"] > fitted.threshold
    # Shrinkage: with 5 positives a tag moves 5/15 of the way from the global threshold to its own best.
    few = targets.clone()
    few[:, 0] = 0
    few[:5, 0] = 1
    start = fit_global(probs, few, default=0.2)
    free = fit_per_tag(probs, few, start, shrink=0)
    shrunk = fit_per_tag(probs, few, start)
    assert float(shrunk[0]) == pytest.approx(start + (float(free[0]) - start) / 3, abs=0.006)
    # Nothing fitted when asked not to, or when the held-out images are too few to halve.
    assert calibrate(probs, targets, ["a", "b", "c"], fit=False).tag_thresholds == {}
    tiny = calibrate(probs[:6], targets[:6], ["a", "b", "c"])
    assert tiny.chosen == "fixed" and tiny.threshold == 0.2 and "too few" in describe(tiny)


def test_average_precision_matches_a_hand_computed_ranking() -> None:
    probs = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    targets = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    assert float(average_precision(probs, targets)[0]) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert torch.isnan(average_precision(probs, torch.zeros_like(targets))[0])


def test_augmentation_keeps_shape_and_range_and_is_identity_when_off() -> None:
    batch = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    out = Augment()(batch)
    assert out.shape == batch.shape and out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 255
    off = Augment(flip=0, max_rotate=0, max_zoom=1, max_lighting=0)(batch)
    assert torch.allclose(off, batch.float(), atol=1e-3)


def test_each_default_augmentation_changes_an_asymmetric_batch() -> None:
    """An Augment that did nothing would pass the test above: each transform must move the pixels."""
    torch.manual_seed(0)
    ramp = torch.linspace(0, 255, 32).view(1, 1, 1, 32).expand(16, 3, 32, 32)  # dark left, bright right
    batch = (ramp + torch.linspace(0, 40, 32).view(1, 1, 32, 1)).clamp(0, 255).to(torch.uint8)
    steps = {
        "flip": Augment(flip=1.0, max_rotate=0, max_zoom=1, max_lighting=0),
        "rotate": Augment(flip=0, max_rotate=10, max_zoom=1, max_lighting=0, p_affine=1.0),
        "zoom": Augment(flip=0, max_rotate=0, max_zoom=1.1, max_lighting=0, p_affine=1.0),
        "lighting": Augment(flip=0, max_rotate=0, max_zoom=1, max_lighting=0.2),
        "default": Augment(),
    }
    for name, augment in steps.items():
        moved = (augment(batch) - batch.float()).abs().mean(dim=(1, 2, 3))
        assert (moved > 1.0).float().mean() > 0.5, name  # most images visibly changed
    flipped = steps["flip"](batch)
    assert torch.allclose(flipped, batch.float().flip(-1), atol=1.0)  # a mirror image, not just any change


def test_checkpoint_round_trip_restores_weights_and_optimiser_moments(tmp_path: Path) -> None:
    model = build_model("resnet18", 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    checkpoint.save(tmp_path, model=model, optimiser=opt, best=None, state={"epoch": 3, "history": []})
    assert not list(tmp_path.glob("*.tmp"))

    fresh = build_model("resnet18", 4)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    state, best = checkpoint.load(tmp_path, model=fresh, optimiser=fresh_opt)
    assert state["epoch"] == 3 and best is None
    assert torch.equal(fresh.fc.weight, model.fc.weight)
    restored, original = fresh_opt.state_dict()["state"], opt.state_dict()["state"]
    assert restored.keys() == original.keys()
    assert torch.equal(restored[0]["exp_avg"], original[0]["exp_avg"])


def test_lr_finder_suggests_a_rate_and_restores_the_model() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(64, 8), (torch.rand(64, 2) < 0.5).float()
    loss = torch.nn.BCEWithLogitsLoss()

    lrs, losses, suggestion = lr_find(
        model, lambda: iter([(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]), lambda a, b: loss(model(a), b)
    )
    assert len(lrs) == len(losses) > 10 and lrs == sorted(lrs)
    assert lrs[0] <= suggestion <= lrs[-1]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_highest_losses_rank_held_out_images_by_their_mean_cross_entropy_and_name_the_disputed_tags() -> None:
    import math

    from tagger.training.evaluate import highest_losses

    probs = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.99, 0.3], [0.6, 0.6, 0.6]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    images = [("file:///a", "one.jpg"), ("file:///a", "two.jpg"), ("s3://b/p", "one.jpg")]

    def by_hand(p: list[float], y: list[float]) -> float:
        return -sum(t * math.log(q) + (1 - t) * math.log(1 - q) for q, t in zip(p, y, strict=True)) / len(p)

    ranked = highest_losses(probs, targets, ["night", "car", "b/w"], images, count=2)
    assert [(e["storage"], e["key"]) for e in ranked] == [images[1], images[2]]
    assert ranked[0]["loss"] == pytest.approx(by_hand([0.2, 0.99, 0.3], [1, 0, 1]), abs=1e-4)
    assert ranked[0]["tags"] == ["night", "b/w"]
    assert [w["tag"] for w in ranked[0]["worst"]] == ["car", "night", "b/w"]  # |p - label|, largest first
    assert ranked[0]["worst"][0] == {"tag": "car", "probability": 0.99, "labelled": False}
    with pytest.raises(ValueError, match="2 images for 3 rows"):
        highest_losses(probs, targets, ["night", "car", "b/w"], images[:2])


def test_a_range_test_is_kept_only_by_a_run_that_starts_where_it_started(tmp_path: Path) -> None:
    import json

    from tagger.training.recipe import LR_FIND_RECORD, _recorded_lr_find

    key = {"arch": "resnet18", "size": 64, "data": "abc", "init": "imagenet", "freeze_epochs": 1}
    assert _recorded_lr_find(tmp_path, key) is None  # no range test was run
    record = {"run": key, "lrs": [1e-4, 1e-3], "losses": [0.7, 0.5], "suggestion": 1e-3, "frozen": True}
    (tmp_path / LR_FIND_RECORD).write_text(json.dumps(record))
    assert _recorded_lr_find(tmp_path, key) == {k: record[k] for k in ("lrs", "losses", "suggestion", "frozen")}
    for other in ({"data": "abd"}, {"init": "random"}, {"freeze_epochs": 0}, {"arch": "resnet50"}):
        assert _recorded_lr_find(tmp_path, key | other) is None, other
    (tmp_path / LR_FIND_RECORD).write_text("{not json")
    assert _recorded_lr_find(tmp_path, key) is None


def test_a_run_on_generated_stills_reports_cross_fitted_figures_keeps_its_energies_and_finds_suspects_in_every_fold(
    tmp_path: Path,
) -> None:
    """The recipe in-process, tiny (MobileNetV3-small, 32 px, one epoch, two folds): the reported calibrated F2
    is the cross-fitted one of its own held-out probabilities, not the in-sample one; the artifact keeps the
    held-out energies; the label suspects are looked for among the training images too (`--folds`)."""
    from tagger.labels import read_labels_csv
    from tagger.sample_archive import generate
    from tagger.settings import Settings
    from tagger.training.calibrate import calibrate
    from tagger.training.options import get_args_parser
    from tagger.training.recipe import main

    generate(tmp_path / "a", 48, seed=3)
    labelled = read_labels_csv(tmp_path / "a" / "labels.csv").under((tmp_path / "a").as_uri())
    args = get_args_parser().parse_args(
        ["--labels", "x", "--arch", "mobilenet_v3_small", "--size", "32", "--random-init", "--lr-spread", "1"]
        + ["--epochs", "1", "--freeze-epochs", "0", "--batch-size", "16", "--folds", "2", "--valid-fraction", "0.34"]
        + ["--plots", str(tmp_path / "plots")]
    )
    settings = Settings(var_dir=tmp_path / "var", model_store=(tmp_path / "models").as_uri(), device="cpu")  # type: ignore[call-arg]
    report, candidate = main(args, settings, labelled)
    assert candidate is not None
    vocabulary = candidate.meta.tags
    fitted = calibrate(candidate.probs, candidate.valid.targets, vocabulary, default=0.2)
    assert report.final["f2_calibrated"] == fitted.f2
    served = torch.tensor(candidate.meta.thresholds())
    assert candidate.meta.threshold == fitted.threshold
    in_sample = fbeta_samples(candidate.probs, candidate.valid.targets, served)
    assert report.final["calibration"]["f2_served"] == round(fitted.f2, 5)
    assert fitted.chosen == "fixed" or report.final["f2_calibrated"] != in_sample
    quantiles = candidate.meta.energy_quantiles
    assert len(quantiles) == 101 and quantiles == sorted(quantiles)
    suspects = candidate.meta.training["label_suspects"]
    keys = {s["key"] for s in suspects}
    assert candidate.meta.training["folds"] == 2 and keys - set(candidate.valid.keys)  # training images too
    assert all(0 <= s["probability"] <= 1 for s in suspects)


def test_the_asymmetric_loss_matches_a_reference_computation_and_is_bce_without_its_asymmetry() -> None:
    import math

    from tagger.training.loss import AsymmetricLoss

    logits = torch.tensor([[2.0, -1.0], [0.5, -3.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    def reference(x: float, y: float, gn: float = 4.0, gp: float = 1.0, clip: float = 0.05) -> float:
        """One element, written out from the paper's definition (Ridnik et al., ICCV 2021, eq. 3 and 5)."""
        p = 1 / (1 + math.exp(-x))
        if y:
            return -((1 - p) ** gp) * math.log(p)
        pm = max(p - clip, 0.0)
        return -(pm**gn) * math.log(1 - pm)

    expected = sum(reference(float(x), float(y)) for x, y in zip(logits.flatten(), targets.flatten(), strict=True)) / 4
    got = AsymmetricLoss(gamma_neg=4.0, gamma_pos=1.0, clip=0.05)(logits, targets)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    plain = AsymmetricLoss(gamma_neg=0.0, gamma_pos=0.0, clip=0.0)(logits, targets)
    assert float(plain) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)))
    # An easy negative (p = 0.047 < clip) costs nothing: the asymmetry the loss is for.
    assert float(AsymmetricLoss()(torch.tensor([[-3.0]]), torch.tensor([[0.0]]))) == 0.0
