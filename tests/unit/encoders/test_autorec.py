"""The AutoRec blocks (encoders/autorec.py, issue 8): hand-worked forward, leave-out, masking,
cold items and users, the blend of paths, a planted low-rank matrix, state round-trips and the
config checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.unit.tasks.helpers import make_batch
from torch.testing import assert_close

from hydrarec.config import AutoRecConfig, config_from_dict
from hydrarec.encoders.autorec import BagEncoder, Decoder, RatingBags, WithBlocks
from hydrarec.errors import ConfigError, DataError
from hydrarec.features.batch import EntityFeatures
from hydrarec.tasks import RatingTask, TaskInputs

# The toy matrix: 3 users (id indices 2, 3, 4) x 2 items (id indices 2, 3); 0 and 1 are padding
# and out of vocabulary. Observed: item 2 rated 5 by user 2 and 1 by user 3; item 3 rated 4 by
# user 4. The other three entries are unobserved.
N_USERS, N_ITEMS = 5, 4
TOY = RatingBags.from_pairs(  # by item: rows are items, columns users
    np.array([2, 2, 3]), np.array([2, 3, 4]), np.array([5.0, 1.0, 4.0]), N_ITEMS
)
S = lambda x: 1.0 / (1.0 + math.exp(-x))  # noqa: E731


def toy_blocks(cfg: AutoRecConfig | None = None) -> tuple[BagEncoder, Decoder]:
    """I-AutoRec on the toy matrix, K = 2, with V, c, W and b set by hand (numbers below)."""
    cfg = cfg or AutoRecConfig(hidden=2)
    items, users = BagEncoder(N_ITEMS, N_USERS, cfg, TOY), Decoder(N_USERS, cfg)
    with torch.no_grad():
        items.encoder.copy_(
            torch.tensor([[0, 0], [0, 0], [0.1, 0.0], [0.0, 0.2], [0.05, -0.1]])
        )  # (n_users, K): row u is column u of V
        items.bias.copy_(torch.tensor([0.0, 0.5]))  # c
        users.decoder.copy_(torch.tensor([[0, 0], [0, 0], [1, 2], [-1, 0], [2, -1]]))
        users.bias.copy_(torch.tensor([[0.0], [0.0], [0.5], [0.0], [0.1]]))
    return items.eval(), users.eval()


def ids(*values: int) -> EntityFeatures:
    return EntityFeatures(ids=torch.tensor(values))


def test_forward_by_hand() -> None:
    # item 2: V r = 5 * [0.1, 0] + 1 * [0, 0.2] = [0.5, 0.2]; + c -> h = sigmoid([0.5, 0.7])
    # item 3: V r = 4 * [0.05, -0.1] = [0.2, -0.4];         + c -> h = sigmoid([0.2, 0.1])
    items, users = toy_blocks()
    h2, h3 = [S(0.5), S(0.7)], [S(0.2), S(0.1)]  # [0.62246, 0.66819], [0.54983, 0.52498]
    assert_close(items(ids(2, 3)), torch.tensor([[*h2, 1.0], [*h3, 1.0]]))
    assert_close(users(ids(2, 3, 4)), torch.tensor([[1.0, 2, 0.5], [-1, 0, 0], [2, -1, 0.1]]))
    # r_ui = W_u . h_i + b_u:
    # (user 2, item 2) = 1 * 0.62246 + 2 * 0.66819 + 0.5 = 2.45884      (observed, 5)
    # (user 4, item 3) = 2 * 0.54983 - 1 * 0.52498 + 0.1 = 0.67469      (observed, 4)
    # (user 3, item 3) = -1 * 0.54983 + 0 + 0 = -0.54983                (unobserved)
    pred = (users(ids(2, 4, 3)) * items(ids(2, 3, 3))).sum(-1)
    assert_close(pred, torch.tensor([2.458835, 0.674689, -0.549834]), atol=1e-5, rtol=0)


def test_leave_out_takes_the_pair_out_of_the_bag() -> None:
    # (user 2, item 2) left out: item 2's bag is user 3's rating 1 alone,
    # V r = [0, 0.2], + c -> h = sigmoid([0, 0.7]); item 3 (row 1) is untouched
    items, _ = toy_blocks()
    out = items(ids(2, 3), leave_out=(torch.tensor([2]), torch.tensor([0])))
    assert_close(out, torch.tensor([[0.5, S(0.7), 1.0], [S(0.2), S(0.1), 1.0]]))
    # leaving out item 3's only rating empties its bag: the zero block
    out = items(ids(2, 3), leave_out=(torch.tensor([4]), torch.tensor([1])))
    assert_close(out[1], torch.zeros(3))
    # a pair that is not in the bag changes nothing
    plain = items(ids(2, 3))
    assert_close(items(ids(2, 3), leave_out=(torch.tensor([3]), torch.tensor([1]))), plain)


def test_leave_out_can_be_switched_off() -> None:
    items, _ = toy_blocks(AutoRecConfig(hidden=2, leave_out=False))
    out = items(ids(2, 3), leave_out=(torch.tensor([2]), torch.tensor([0])))
    assert_close(out, items(ids(2, 3)))


def test_cold_items_get_the_zero_block_and_a_finite_prediction() -> None:
    # id 1 = out of vocabulary (unseen in train), id 0 = padding, id 9 = past the table: no bag
    items, users = toy_blocks()
    assert_close(items(ids(1, 0, 9)), torch.zeros(3, 3))
    task = RatingTask("rating", 2, (1.0, 5.0), 3.5, autorec_paths=(("item", 3, 0.5),))
    side = (users(ids(2)), items(ids(1)))
    rep = torch.tensor([[0.3, -0.2]])
    out = task(TaskInputs(torch.zeros(1, 2), torch.zeros(1, 2), rep=rep, side=side))  # (1, 3)
    assert out[0, 2] == 0.0  # the "has ratings" flag of the zero block
    pred = task.predict(out)
    assert torch.isfinite(pred).all()
    assert_close(pred, task.head(rep).squeeze(-1).clamp(1, 5))  # the head's prediction alone


def test_blend_of_the_two_paths_by_hand() -> None:
    # head: w = [1, 0], b = 3 -> rep [0.5, 9] gives 3.5; AutoRec path: mu' = 3 plus
    # (user 2, item 2) = 2.458835 -> 5.458835. Blend with a = 0.25:
    # 0.75 * 3.5 + 0.25 * 5.458835 = 3.989709; a = 1 -> 5.458835, clipped to 5.
    items, users = toy_blocks()
    inputs = TaskInputs(
        torch.zeros(1, 2), torch.zeros(1, 2), rep=torch.tensor([[0.5, 9.0]]),
        side=(users(ids(2)), items(ids(2))),
    )  # fmt: skip
    for a, expected in ((0.25, 3.989709), (1.0, 5.0), (0.0, 3.5)):
        task = RatingTask("rating", 2, (1.0, 5.0), 3.0, autorec_paths=(("item", 3, a),))
        with torch.no_grad():
            task.head.weight.copy_(torch.tensor([[1.0, 0.0]]))
        out = task(inputs)
        assert_close(out, torch.tensor([[3.5, 5.458835, 1.0]]), atol=1e-5, rtol=0)
        assert_close(task.predict(out), torch.tensor([expected]), atol=1e-5, rtol=0)


def test_item_and_user_paths_blend_by_hand_and_give_way_when_cold() -> None:
    # Side blocks [I-AutoRec | U-AutoRec], 3 channels each. User: [W_u, b_u | h_u, 1],
    # item: [h_i, 1 | W_i, b_i]. I path: 2 + (1 * 0.5 + 2 * 0.25 + 0.5 * 1) = 3.5;
    # U path: 2 + (0.2 * 1 + 0.4 * -1 + 1 * 0.3) = 2.1; head 2 (zero weights, bias 2).
    # a = 0.5, b = 0.25: 0.25 * 2 + 0.5 * 3.5 + 0.25 * 2.1 = 2.775.
    # A cold user (U block [0, 0, 0]): flag 0, its 0.25 goes to the head: 0.5 * 2 + 0.5 * 3.5
    paths = (("item", 3, 0.5), ("user", 3, 0.25))
    task = RatingTask("rating", 2, (1.0, 5.0), 2.0, autorec_paths=paths)
    with torch.no_grad():
        task.head.weight.zero_()
    user = torch.tensor([[1.0, 2.0, 0.5, 0.2, 0.4, 1.0], [1.0, 2.0, 0.5, 0.0, 0.0, 0.0]])
    item = torch.tensor([[0.5, 0.25, 1.0, 1.0, -1.0, 0.3]] * 2)
    out = task(TaskInputs(user[:, :0], item[:, :0], rep=torch.zeros(2, 2), side=(user, item)))
    assert_close(out[0], torch.tensor([2.0, 3.5, 2.1, 1.0, 1.0]))  # head, I, U, I flag, U flag
    assert_close(task.predict(out), torch.tensor([2.775, 2.75]))


def test_rating_loss_masks_unobserved_entries() -> None:
    # A head that outputs 0 and an AutoRec path with mu' = 0 (numbers above): rows
    # (user 2, item 2, 5), (user 4, item 3, 4), and (user 3, item 3) unlabelled. Each path's
    # squared error, summed, averaged over the two labelled rows:
    # ((0 - 5)^2 + (2.458835 - 5)^2 + (0 - 4)^2 + (0.674689 - 4)^2) / 2 = 29.2576
    items, users = toy_blocks()
    task = RatingTask("rating", 2, (1.0, 5.0), 0.0, autorec_paths=(("item", 3, 0.5),))
    with torch.no_grad():
        task.head.weight.zero_()
    batch = make_batch(
        item_index=[2, 3],
        item_pos=[0, 1, 1],
        labels={"rating": [5.0, 4.0, float("nan")]},
        label_mask={"rating": [True, True, False]},
    )
    side = (users(ids(2, 4, 3)), items(ids(2, 3))[batch.item_pos])
    out = task(TaskInputs(torch.zeros(3, 2), torch.zeros(3, 2), rep=torch.zeros(3, 2), side=side))
    loss = task.loss(out, batch)
    expected = (25 + (2.458835 - 5) ** 2 + 16 + (0.674689 - 4) ** 2) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-4)
    loss.backward()
    grad = users.decoder.grad
    assert grad is not None
    assert torch.equal(grad[3], torch.zeros(2))  # user 3's only row is unobserved: no gradient
    assert grad[2].abs().sum() > 0 and grad[4].abs().sum() > 0


def test_input_dropout_only_in_training_and_deterministic_under_seed() -> None:
    items, _ = toy_blocks(AutoRecConfig(hidden=2, input_dropout=0.5))
    assert_close(items.eval()(ids(2, 3)), toy_blocks()[0](ids(2, 3)))  # eval: every rating
    items.train()
    torch.manual_seed(3)
    a = items(ids(2, 3, 2, 3))
    torch.manual_seed(3)
    assert torch.equal(a, items(ids(2, 3, 2, 3)))
    # a kept rating is scaled by 1 / (1 - 0.5): item 3's bag is 4 * 2 = 8 or nothing,
    # V r = 8 * [0.05, -0.1] = [0.4, -0.8]; + c -> sigmoid([0.4, -0.3])
    kept = torch.tensor([S(0.4), S(-0.3), 1.0])
    assert any(torch.allclose(a[1], t) for t in (torch.zeros(3), kept))


def test_state_dict_round_trip_carries_the_bags() -> None:
    # a block built without ratings (as when a run is loaded) takes the bags from the weights
    trained, _ = toy_blocks()
    loaded = BagEncoder(N_ITEMS, N_USERS, AutoRecConfig(hidden=2)).eval()
    assert_close(loaded(ids(2, 3)), torch.zeros(2, 3))  # no bags yet: every item is cold
    loaded.load_state_dict(trained.state_dict())
    assert_close(loaded(ids(2, 3)), trained(ids(2, 3)))


def test_l2_enters_the_gradient_as_in_the_loss() -> None:
    # l2 = 0.5: d/dW of the output sum is 1 on the looked-up rows; the L2 adds 2 * 0.5 * W to
    # every row, looked up or not, exactly the gradient of sum + 0.5 * ||W||^2
    _, users = toy_blocks(AutoRecConfig(hidden=2, l2=0.5))
    users(ids(2)).sum().backward()
    assert users.decoder.grad is not None
    expected = users.decoder.detach() * 1.0
    expected[2] += 1.0
    assert_close(users.decoder.grad, expected)
    # V: the same, against the gradient of a block without L2
    items, reference = toy_blocks(AutoRecConfig(hidden=2, l2=0.5))[0], toy_blocks()[0]
    items(ids(2)).sum().backward()
    reference(ids(2)).sum().backward()
    assert items.encoder.grad is not None and reference.encoder.grad is not None
    assert_close(items.encoder.grad, reference.encoder.grad + items.encoder.detach())


def test_with_block_appends_and_collects_param_groups() -> None:
    cfg = AutoRecConfig(hidden=2, l2=0.3)
    wrapped = WithBlocks(_IdTower(), [Decoder(N_USERS, cfg)])
    assert wrapped.out_dim == 4
    out = wrapped(ids(2, 4))
    assert_close(out[:, :1], torch.tensor([[2.0], [4.0]]))  # the tower's part, unchanged
    (group,) = wrapped.param_groups()  # the block's parameters, without AdamW weight decay
    assert group["weight_decay"] == 0.0 and len(group["params"]) == 2
    assert "lr" not in group  # train.lr unless model.autorec.lr is set
    (group,) = Decoder(N_USERS, AutoRecConfig(hidden=2, lr=0.05)).param_groups()
    assert group["lr"] == 0.05


class _IdTower(torch.nn.Module):
    out_dim = 1

    def forward(self, feats: EntityFeatures) -> torch.Tensor:
        return feats.ids.float().unsqueeze(-1)  # (B, 1)


def test_learns_a_planted_low_rank_matrix() -> None:
    # 60 users x 40 items, ratings 3 + a rank-2 signal (+ small noise), 60% observed; 15% of the
    # observed entries held out. The block (with a fixed global-mean bias) must beat the mean
    # predictor on the held-out entries by far (the noise floor is 0.1).
    g = np.random.default_rng(0)
    n_u, n_i = 60, 40
    p, q = g.normal(size=(n_u, 2)), g.normal(size=(n_i, 2))
    full = 3.0 + 0.8 * p @ q.T + 0.1 * g.normal(size=(n_u, n_i))  # (users, items)
    u, i = np.nonzero(g.random((n_u, n_i)) < 0.6)
    r = full[u, i].astype(np.float32)
    test = g.random(len(r)) < 0.15
    tr_u, tr_i, tr_r = u[~test] + 2, i[~test] + 2, r[~test]  # id indices start at 2
    mean = float(tr_r.mean())
    torch.manual_seed(0)
    cfg = AutoRecConfig(hidden=16)
    bags = RatingBags.from_pairs(tr_i, tr_u, tr_r - mean, n_i + 2)  # centred: converges faster
    items, users = BagEncoder(n_i + 2, n_u + 2, cfg, bags), Decoder(n_u + 2, cfg)
    opt = torch.optim.Adam([*items.parameters(), *users.parameters()], lr=0.03)
    rows = np.arange(len(tr_r))
    for step in range(150):
        batch = np.random.default_rng(step).choice(rows, 100, replace=False)
        bu, bi = torch.from_numpy(tr_u[batch]), torch.from_numpy(tr_i[batch])
        uniq, pos = torch.unique(bi, return_inverse=True)
        h = items(EntityFeatures(ids=uniq), leave_out=(bu, pos))  # (U, K + 1)
        pred = mean + (users(EntityFeatures(ids=bu)) * h[pos]).sum(-1)  # (B,)
        loss = ((pred - torch.from_numpy(tr_r[batch])) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    items.eval()
    with torch.no_grad():
        te_u, te_i = torch.from_numpy(u[test] + 2), torch.from_numpy(i[test] + 2)
        pred = mean + (users(EntityFeatures(ids=te_u)) * items(EntityFeatures(ids=te_i))).sum(-1)
    rmse = float(np.sqrt(np.mean((pred.numpy() - r[test]) ** 2)))
    baseline = float(np.sqrt(np.mean((mean - r[test]) ** 2)))
    assert rmse < 0.35 * baseline, (rmse, baseline)  # measured: 0.29 against 1.13


def test_ratings_are_checked() -> None:
    with pytest.raises(DataError, match="differ in length"):
        RatingBags.from_pairs(np.array([1]), np.array([1, 2]), np.array([1.0]), 3)
    with pytest.raises(DataError, match="outside"):
        RatingBags.from_pairs(np.array([3]), np.array([1]), np.array([1.0]), 3)
    with pytest.raises(DataError, match="finite"):
        RatingBags.from_pairs(np.array([1]), np.array([1]), np.array([np.nan]), 3)
    with pytest.raises(DataError, match="column index"):
        BagEncoder(N_ITEMS, 3, AutoRecConfig(hidden=2), TOY)  # user 4 is past 3 users


def _raw(*tasks: dict[str, str], **autorec: object) -> dict[str, object]:
    return {"model": {"autorec": {"hidden": 8, **autorec}}, "tasks": list(tasks)}


RATING = {"name": "rating", "kind": "rating", "column": "rating"}


def test_config_checks_name_the_field() -> None:
    assert config_from_dict(_raw(RATING)).model.autorec.hidden == 8
    with pytest.raises(ConfigError, match="exactly one rating task"):
        config_from_dict(_raw({"name": "like", "kind": "binary", "rule": "rating >= 4"}))
    with pytest.raises(ConfigError, match="retrieval task"):
        config_from_dict(_raw(RATING, {"name": "retrieval", "kind": "retrieval"}))
    with pytest.raises(ConfigError, match=r"model\.autorec\.input_dropout"):
        config_from_dict(_raw(RATING, input_dropout=1.0))
    with pytest.raises(ConfigError, match=r"model\.autorec\.hidden"):
        config_from_dict(_raw(RATING, hidden=-1))
    raw = _raw(RATING) | {"train": {"examples": "windows"}}
    raw["model"]["sequence"] = {"kind": "gru"}  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"train\.examples = 'rows'"):
        config_from_dict(raw)
    both = _raw(RATING | {"autorec_weight": 0.8, "user_autorec_weight": 0.3})
    both["model"]["user_autorec"] = {"hidden": 4}  # type: ignore[index]
    with pytest.raises(ConfigError, match="sum past 1"):
        config_from_dict(both)
    both["model"]["autorec"] = {"hidden": 0}  # type: ignore[index]
    assert config_from_dict(both).model.user_autorec.hidden == 4  # U-AutoRec alone: 0.3


def test_batch_and_side_blocks_reach_the_rating_task_through_the_model() -> None:
    # the model splits the trailing S channels off both vectors and hands them to the task
    from hydrarec.model.multitask import MultiTaskRecommender

    task = RatingTask("rating", 2, (1.0, 5.0), 2.0, autorec_paths=(("item", 3, 0.5),))
    with torch.no_grad():
        task.head.weight.zero_()
    model = MultiTaskRecommender(_Null(), _Null(), _Arch(), [task], side_dim=3)
    user = torch.tensor([[9.0, 9.0, 1.0, 2.0, 0.5]])  # main (D = 2) | [W_u, b_u]
    item = torch.tensor([[7.0, 7.0, 0.5, 0.25, 1.0]])  # main | [h_i, 1]
    # head 2.0; AutoRec 2.0 + 1 * 0.5 + 2 * 0.25 + 0.5 = 3.5; blend 0.5 * 2 + 0.5 * 3.5 = 2.75
    assert_close(model.predict_pairs(user, item)["rating"], torch.tensor([2.75]))


class _Null(torch.nn.Module):
    def forward(self, *args: object) -> torch.Tensor:
        raise AssertionError("not called")


class _Arch(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        assert x.shape[-1] == 6  # [user, item, user * item] of the main parts only (3 * D)
        return [x[:, :2]]
