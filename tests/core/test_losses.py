"""Losses: class weights from frequencies (hand-computed), weighting acts, each loss trains a toy problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ctseg_core.losses import (LOSSES, BalancedCrossEntropy, ExpCrossEntropy, FocalLoss, HybridLoss, RadnetLoss,
                               TverskyLoss, adaptive_log, class_weights_from_labels, create_loss)


def test_class_weights_from_counts_by_hand():
    counts = [900, 100, 0, 0, 0, 0, 0, 0]
    w = class_weights_from_labels(counts, power=1.0)
    # frequencies 0.9, 0.1 -> 1/f = 1.111, 10; mean over present = 5.5556; absent get the cap (100 x min)
    assert w[0] == pytest.approx(1.1111 / 5.5556, rel=1e-3)
    assert w[1] == pytest.approx(10 / 5.5556, rel=1e-3)
    assert w[2] == pytest.approx(111.11 / 5.5556, rel=1e-3)
    sqrt = class_weights_from_labels(counts)  # power 0.5
    assert sqrt[1] / sqrt[0] == pytest.approx(3.0, rel=1e-4)


def test_class_weights_from_label_arrays_equal_counts():
    a = np.zeros((2, 4, 4), np.uint8)
    a[0, :2, :2] = 1
    a[1, 0, 0] = 7
    b = np.full((3, 3), 1, np.uint8)
    from_arrays = class_weights_from_labels([a, b])
    expected = class_weights_from_labels([32 - 5, 4 + 9, 0, 0, 0, 0, 0, 1])
    assert np.allclose(from_arrays, expected)


def test_focal_weight_scales_the_loss_of_its_class():
    torch.manual_seed(0)
    logits = torch.randn(1, 8, 8, 8)
    target = torch.ones(1, 8, 8, dtype=torch.long)  # all class 1
    plain = FocalLoss(np.ones(8))(logits, target)
    doubled = FocalLoss(np.array([1, 2, 1, 1, 1, 1, 1, 1.0]))(logits, target)
    other = FocalLoss(np.array([1, 1, 2, 1, 1, 1, 1, 1.0]))(logits, target)
    assert float(doubled) == pytest.approx(2 * float(plain), rel=1e-5)
    assert float(other) == pytest.approx(float(plain), rel=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_decreases_on_a_toy_problem(name):
    """Segment bright squares (class 3) from a dark background with a two-layer net."""
    torch.manual_seed(0)
    x = torch.rand(4, 1, 16, 16) * 0.2
    target = torch.zeros(4, 16, 16, dtype=torch.long)
    for i in range(4):
        x[i, 0, 2 + i:8 + i, 3:9] += 0.8
        target[i, 2 + i:8 + i, 3:9] = 3
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1))
    weights = class_weights_from_labels([target.numpy()])
    loss_fn = create_loss(name, class_weights=weights)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    first = float(loss_fn(net(x), target).detach())
    for _ in range(60):
        opt.zero_grad()
        loss = loss_fn(net(x), target)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.3 * first
    # Dice alone sees only the lesion class, so compare its mask (the others also place background)
    assert ((net(x).argmax(1) == 3) == (target == 3)).float().mean() > 0.97
    if name != "dice":
        with torch.no_grad():
            assert (net(x).argmax(1) == target).float().mean() > 0.97


def test_dice_ignores_classes_absent_from_the_target():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 2
    logits = torch.full((1, 8, 8, 8), -20.0)
    logits[:, 0] = 20.0
    logits[0, 2, 2:6, 2:6] = 20.0
    logits[0, 0, 2:6, 2:6] = -20.0
    dice = create_loss("dice")
    assert float(dice(logits, target)) < 1e-4  # perfect on class 2; classes 1, 3..7 absent: not counted
    logits[0, 2, 2:4, 2:6] = -20.0  # half of class 2 missed -> Dice 2/3
    logits[0, 0, 2:4, 2:6] = 20.0
    assert float(dice(logits, target)) == pytest.approx(1 / 3, abs=1e-3)
    assert float(dice(logits, torch.zeros_like(target))) == 0.0


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("hinge")


def _exact(target: torch.Tensor, classes: int = 8, scale: float = 30.0) -> torch.Tensor:
    """Logits that put all probability on the target class."""
    return nn.functional.one_hot(target, classes).permute(0, 3, 1, 2).float() * scale


def test_balanced_cross_entropy_weighs_each_class_by_the_share_of_the_others():
    torch.manual_seed(0)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, :3] = 2  # 3 of 16 voxels
    logits = torch.randn(1, 8, 4, 4)
    ce = nn.functional.cross_entropy(logits, target, reduction="none")
    w = torch.where(target == 2, 1 - 3 / 16, 1 - 13 / 16)
    assert float(BalancedCrossEntropy()(logits, target)) == pytest.approx(float((w * ce).sum() / w.sum()), rel=1e-5)


def test_tversky_and_hybrid_losses_vanish_on_a_perfect_map_and_weigh_misses_more():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 4
    assert float(TverskyLoss()(_exact(target), target)) == pytest.approx(0.0, abs=1e-4)
    assert float(HybridLoss()(_exact(target), target)) == pytest.approx(0.0, abs=1e-3)
    missed, extra = target.clone(), target.clone()
    missed[0, 2:4, 2:6] = 0  # half the lesion missed (false negatives)
    extra[0, 6:8, 2:6] = 4  # half as much again painted (false positives)
    tl = TverskyLoss(alpha=0.7)
    assert float(tl(_exact(missed), target)) > float(tl(_exact(extra), target))  # alpha 0.7 on false negatives


def test_adaptive_log_loss_is_logarithmic_below_omega_linear_above_and_continuous():
    x = torch.tensor([0.0, 0.1, 0.5 - 1e-4, 0.5, 0.9])
    y = adaptive_log(x, omega=0.5, epsilon=0.1)
    assert float(y[0]) == 0.0 and float(y[1]) == pytest.approx(0.5 * np.log(2.0), rel=1e-5)
    assert float(y[3]) == pytest.approx(float(y[2]), abs=1e-3)
    assert float(y[4] - y[3]) == pytest.approx(0.4, rel=1e-5)  # slope 1 above omega


def test_exponential_cross_entropy_by_hand():
    torch.manual_seed(1)
    logits, target = torch.randn(2, 8, 3, 3), torch.randint(0, 8, (2, 3, 3))
    w = torch.linspace(0.5, 2.0, 8)
    ce = nn.functional.cross_entropy(logits, target, reduction="none")
    expected = (w[target] * ce ** 0.3).mean()
    assert float(ExpCrossEntropy(w.numpy(), gamma=0.3)(logits, target)) == pytest.approx(float(expected), rel=1e-5)


def test_radnet_loss_adds_the_auxiliary_masks_to_the_slice_calls():
    torch.manual_seed(2)
    out = {"slice_logits": torch.randn(1, 4), "aux": [torch.randn(1, 4, 5, 5) for _ in range(3)]}
    target = {"slice": torch.tensor([[0.0, 1.0, 1.0, 0.0]]), "mask": (torch.rand(1, 4, 5, 5) > 0.8).float()}
    bce = nn.functional.binary_cross_entropy_with_logits
    expected = bce(out["slice_logits"], target["slice"]) + 0.5 * sum(bce(a, target["mask"]) for a in out["aux"])
    assert float(RadnetLoss(aux_weight=0.5)(out, target)) == pytest.approx(float(expected), rel=1e-5)


def test_pretrain_offers_every_loss():
    from ctseg_core.cli.pretrain import LOSS_CHOICES

    assert set(LOSS_CHOICES) == set(LOSSES) | {"radnet"}


def test_fine_tuning_offers_every_segmentation_loss():
    from ctseg_core.training.args import SEGMENTATION_LOSSES

    assert SEGMENTATION_LOSSES == LOSSES
    import argparse

    from ctseg_core.training.args import add_arguments, request_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    assert request_from_args(p.parse_args(["--workspace", "W", "--loss", "hybrid"])).recipe.loss == "hybrid"
    assert request_from_args(p.parse_args(["--workspace", "W"])).recipe.loss == "focal"
