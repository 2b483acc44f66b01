"""JointLoss: static, uncertainty, DWA and GradNorm weighting against hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from hydrarec.config import LossConfig
from hydrarec.tasks import JointLoss


def _losses(a: float, b: float) -> dict[str, torch.Tensor]:
    return {"a": torch.tensor(a), "b": torch.tensor(b)}


def test_static() -> None:
    # 1 * 2 + 0.5 * 3 = 3.5
    joint = JointLoss(["a", "b"], LossConfig(weighting="static"), {"a": 1.0, "b": 0.5})
    total, weights = joint(_losses(2.0, 3.0))
    assert total.item() == pytest.approx(3.5)
    assert weights == {"a": 1.0, "b": 0.5}
    assert joint.last_weights == weights
    assert list(joint.parameters()) == []


def test_uncertainty_by_hand() -> None:
    # s = [0, ln 2], static w = [1, 2], L = [3, 4]:
    # total = 1 (e^0 * 3 + 0) + 2 (e^-ln2 * 4 + ln 2) = 3 + 4 + 2 ln 2 = 8.386294
    # weights c_k = w_k exp(-s_k) = [1, 1]
    # d total / d s_k = w_k (1 - exp(-s_k) L_k) = [1 (1 - 3), 2 (1 - 2)] = [-2, -2]
    joint = JointLoss(["a", "b"], LossConfig(weighting="uncertainty"), {"a": 1.0, "b": 2.0})
    with torch.no_grad():
        joint.log_vars.copy_(torch.tensor([0.0, math.log(2)]))
    total, weights = joint(_losses(3.0, 4.0))
    assert total.item() == pytest.approx(7 + 2 * math.log(2), rel=1e-6)
    assert weights == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    total.backward()
    assert joint.log_vars.grad is not None
    assert_close(joint.log_vars.grad, torch.tensor([-2.0, -2.0]))


def test_uncertainty_optimum_is_log_of_the_loss() -> None:
    # minimising exp(-s) L + s over s gives s = ln L: with L = 4, s -> ln 4 = 1.386294
    joint = JointLoss(["a"], LossConfig(weighting="uncertainty"), {"a": 1.0})
    opt = torch.optim.SGD(joint.parameters(), lr=0.5)
    for _ in range(200):
        opt.zero_grad()
        joint({"a": torch.tensor(4.0)})[0].backward()
        opt.step()
    assert joint.log_vars.item() == pytest.approx(math.log(4), abs=1e-4)


def test_dwa_by_hand() -> None:
    # T = 2, K = 2. Epochs 1 and 2 train with weights 1.
    # After epoch 2: r = L(2) / L(1) = [0.5 / 1, 2 / 2] = [0.5, 1]
    #   w_a = 2 e^0.25 / (e^0.25 + e^0.5) = 2 / (1 + e^0.25) = 0.875647, w_b = 1.124353
    # After epoch 3 (L = [0.5, 1]): r = [0.5 / 0.5, 1 / 2] = [1, 0.5] -> the two swap.
    joint = JointLoss(
        ["a", "b"], LossConfig(weighting="dwa", dwa_temperature=2.0), {"a": 1.0, "b": 1.0}
    )
    assert joint(_losses(1.0, 2.0))[1] == {"a": 1.0, "b": 1.0}
    joint.epoch_end({"a": 1.0, "b": 2.0})
    assert joint(_losses(1.0, 2.0))[1] == {"a": 1.0, "b": 1.0}
    joint.epoch_end({"a": 0.5, "b": 2.0})
    w_a = 2 / (1 + math.exp(0.25))
    assert w_a == pytest.approx(0.875647, abs=1e-6)
    total, weights = joint(_losses(1.0, 2.0))
    assert weights == {"a": pytest.approx(w_a), "b": pytest.approx(2 - w_a)}
    assert total.item() == pytest.approx(w_a * 1.0 + (2 - w_a) * 2.0, rel=1e-6)
    joint.epoch_end({"a": 0.5, "b": 1.0})
    assert joint(_losses(1.0, 2.0))[1] == {"a": pytest.approx(2 - w_a), "b": pytest.approx(w_a)}


def test_dwa_static_weights_multiply() -> None:
    joint = JointLoss(["a", "b"], LossConfig(weighting="dwa"), {"a": 3.0, "b": 1.0})
    joint.epoch_end({"a": 1.0, "b": 2.0})
    joint.epoch_end({"a": 0.5, "b": 2.0})
    w_a = 2 / (1 + math.exp(0.25))
    assert joint(_losses(1.0, 1.0))[1] == {"a": pytest.approx(3 * w_a), "b": pytest.approx(2 - w_a)}


def test_gradnorm_first_step_by_hand() -> None:
    # Shared parameter W = 1; L_a = 2 W, L_b = 4 W -> ||grad_W L|| = [2, 4].
    # Step 1: L(0) = L, ratios [1, 1]; v = [1, 1]: G = [2, 4], mean 3, target [3, 3];
    # L_grad = |2 - 3| + |4 - 3| = 2; dL_grad / dv = [-2, +4].
    w = torch.ones(1, requires_grad=True)
    joint = JointLoss(["a", "b"], LossConfig(weighting="gradnorm"), {"a": 1.0, "b": 1.0}, [w])
    assert joint.differentiates_losses
    losses = {"a": 2 * w.sum(), "b": 4 * w.sum()}
    total, weights = joint(losses)
    assert weights == {"a": 1.0, "b": 1.0}
    joint.before_backward(losses)  # the trainer's per-step hook: GradNorm on W
    total.backward()  # the total does not add to v's gradient
    assert_close(joint.gradnorm_weights.grad, torch.tensor([-2.0, 4.0]))
    assert w.grad is not None and w.grad.item() == pytest.approx(6.0)  # 1 * 2 + 1 * 4


def test_gradnorm_second_step_uses_loss_ratios() -> None:
    # alpha = 1. Step 1 records L(0) = [2, 4]. Step 2: L = [2, 2] (L_a = 2 W, L_b = 2 W, W = 1),
    # v = [1, 1]: L~ = [1, 0.5], r = L~ / mean = [4/3, 2/3]; G = [2, 2], mean 2,
    # target = [8/3, 4/3]; L_grad = 2/3 + 2/3 = 4/3; dL_grad / dv = [-2, +2].
    cfg = LossConfig(weighting="gradnorm", gradnorm_alpha=1.0)
    w = torch.ones(1, requires_grad=True)
    joint = JointLoss(["a", "b"], cfg, {"a": 1.0, "b": 1.0}, [w])
    gn = joint.gradnorm_step({"a": 2 * w.sum(), "b": 4 * w.sum()}, [w])
    assert gn.item() == pytest.approx(2.0)  # step 1 of test_gradnorm_first_step_by_hand
    joint.gradnorm_weights.grad = None
    gn = joint.gradnorm_step({"a": 2 * w.sum(), "b": 2 * w.sum()}, [w])
    assert gn.item() == pytest.approx(4 / 3)
    assert_close(joint.gradnorm_weights.grad, torch.tensor([-2.0, 2.0]))


def test_gradnorm_renormalises_to_k() -> None:
    # after an optimizer step v = [1, 3]: the next forward rescales to sum 2 -> [0.5, 1.5]
    shared = [torch.ones(1, requires_grad=True)]
    joint = JointLoss(["a", "b"], LossConfig(weighting="gradnorm"), {"a": 2.0, "b": 1.0}, shared)
    with torch.no_grad():
        joint.gradnorm_weights.copy_(torch.tensor([1.0, 3.0]))
    total, weights = joint(_losses(1.0, 1.0))
    assert weights == {"a": pytest.approx(1.0), "b": pytest.approx(1.5)}  # static 2 * 0.5
    assert total.item() == pytest.approx(2.5)
    assert total.requires_grad is False  # v learns only from gradnorm_step


def test_gradnorm_without_its_step_is_an_error() -> None:
    # a trainer that never calls before_backward would silently train with static weights
    w = torch.ones(1, requires_grad=True)
    joint = JointLoss(["a"], LossConfig(weighting="gradnorm"), {"a": 1.0}, [w])
    joint({"a": 2 * w.sum()})
    with pytest.raises(RuntimeError, match="before_backward"):
        joint({"a": 2 * w.sum()})
    with torch.no_grad():  # validation losses need no step
        joint({"a": 2 * w.sum()})
        joint({"a": 2 * w.sum()})


def test_gradnorm_step_in_another_mode_is_an_error() -> None:
    joint = JointLoss(["a"], LossConfig(weighting="dwa"), {"a": 1.0})
    assert not joint.differentiates_losses
    with pytest.raises(RuntimeError, match="dwa"):
        joint.gradnorm_step({"a": torch.tensor(1.0)}, [])


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "dwa"])
def test_before_backward_of_the_other_modes_does_nothing(weighting: str) -> None:
    w = torch.ones(1, requires_grad=True)
    cfg = LossConfig(weighting=weighting)  # type: ignore[arg-type]
    joint = JointLoss(["a"], cfg, {"a": 1.0}, [w])
    losses = {"a": 2 * w.sum()}
    joint(losses)
    joint.before_backward(losses)
    assert w.grad is None and all(p.grad is None for p in joint.parameters())


def test_gradnorm_needs_the_shared_parameters() -> None:
    with pytest.raises(ValueError, match="shared parameters"):
        JointLoss(["a"], LossConfig(weighting="gradnorm"), {"a": 1.0})


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "dwa", "gradnorm"])
def test_state_dict_round_trips(weighting: str) -> None:
    cfg = LossConfig(weighting=weighting)  # type: ignore[arg-type]
    w = torch.ones(1, requires_grad=True)
    joint = JointLoss(["a", "b"], cfg, {"a": 1.0, "b": 0.5}, [w])
    for p in joint.parameters():
        with torch.no_grad():
            p.copy_(torch.tensor([0.3, 1.7]))
    joint.epoch_end({"a": 1.0, "b": 2.0})
    joint.epoch_end({"a": 0.5, "b": 3.0})
    joint.before_backward({"a": 2 * w.sum(), "b": 4 * w.sum()})  # GradNorm's state
    fresh = JointLoss(["a", "b"], cfg, {"a": 1.0, "b": 0.5}, [w])
    fresh.load_state_dict(joint.state_dict())
    assert fresh(_losses(1.0, 2.0))[1] == joint(_losses(1.0, 2.0))[1]
    for key, value in joint.state_dict().items():
        assert_close(fresh.state_dict()[key], value)


def test_mismatched_names_are_errors() -> None:
    with pytest.raises(ValueError, match="static weights"):
        JointLoss(["a", "b"], LossConfig(), {"a": 1.0})
    joint = JointLoss(["a", "b"], LossConfig(), {"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match="expected"):
        joint({"a": torch.tensor(1.0)})
