"""Sampled softmax with logQ correction and accidental-hit masking, against hand-worked numbers."""

from __future__ import annotations

import math

import pytest
import torch
from tests.unit.tasks.helpers import make_batch
from torch.testing import assert_close

from hydrarec.config import RetrievalTaskConfig
from hydrarec.errors import ConfigError
from hydrarec.features.batch import EntitySpec
from hydrarec.tasks import RetrievalTask, TaskInputs, build_task, sampled_softmax_loss
from hydrarec.tasks.retrieval import own_columns

E = math.e


def test_two_by_three_with_logq_and_one_accidental_hit() -> None:
    # Candidates: columns 0, 1, 2 hold catalogue items 10, 20, 10 (item 10 twice).
    # log q = [ln 2, 0, ln 2].
    # Row 0: logits [2, 1, 3], positive column 0 (item 10). Column 2 is item 10 too: an
    #   accidental hit, masked. Corrected: [2 - ln 2, 1, masked]
    #   loss0 = -ln( (e^2/2) / (e^2/2 + e) ) = ln(1 + 2/e) = 0.551444
    # Row 1: logits [0, 1, 2], positive column 1 (item 20), no hit. Corrected: [-ln 2, 1, 2 - ln 2]
    #   loss1 = -ln( e / (1/2 + e + e^2/2) ) = ln(1/(2e) + 1 + e/2) = 0.933378
    # mean = 0.742411
    logits = torch.tensor([[2.0, 1.0, 3.0], [0.0, 1.0, 2.0]], requires_grad=True)
    loss = sampled_softmax_loss(
        logits,
        positive=torch.tensor([0, 1]),
        candidate_ids=torch.tensor([10, 20, 10]),
        positive_ids=torch.tensor([10, 20]),
        log_q=torch.tensor([math.log(2.0), 0.0, math.log(2.0)]),
    )
    expected = (math.log(1 + 2 / E) + math.log(1 / (2 * E) + 1 + E / 2)) / 2
    assert expected == pytest.approx(0.742411, abs=1e-6)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert logits.grad is not None
    assert logits.grad[0, 2].item() == 0.0  # the masked hit takes no part
    # d loss / d logit of the positive = (softmax - 1) / B: row 0 softmax = (e^2/2)/(e^2/2 + e)
    p0 = (E**2 / 2) / (E**2 / 2 + E)
    assert logits.grad[0, 0].item() == pytest.approx((p0 - 1) / 2, rel=1e-6)


def test_without_corrections_is_plain_cross_entropy() -> None:
    # Same logits, no log q, distinct ids: row 0 = ln(1 + e^-1 + e^1) = 1.407606,
    # row 1 = ln(e^-1 + 1 + e^1) = 1.407606 (same three numbers shifted), mean 1.407606.
    logits = torch.tensor([[2.0, 1.0, 3.0], [0.0, 1.0, 2.0]])
    loss = sampled_softmax_loss(
        logits, torch.tensor([0, 1]), torch.tensor([10, 20, 30]), torch.tensor([10, 20])
    )
    assert loss.item() == pytest.approx(math.log(1 + 1 / E + E), rel=1e-6)


def test_row_mask_and_empty_mask() -> None:
    logits = torch.tensor([[2.0, 1.0, 3.0], [0.0, 1.0, 2.0]], requires_grad=True)
    args = (torch.tensor([0, 1]), torch.tensor([10, 20, 30]), torch.tensor([10, 20]))
    only_row1 = sampled_softmax_loss(logits, *args, mask=torch.tensor([False, True]))
    assert only_row1.item() == pytest.approx(math.log(1 / E + 1 + E), rel=1e-6)
    none = sampled_softmax_loss(logits, *args, mask=torch.tensor([False, False]))
    none.backward()  # still in the graph
    assert none.item() == 0.0
    assert logits.grad is not None and torch.all(logits.grad == 0)


def _batch():
    # items: rows 0, 1, 2 = catalogue 10, 20, 30; interactions at rows 0 and 1
    return make_batch(item_index=[10, 20, 30], item_pos=[0, 1], item_logq=[math.log(2.0), 0.0, 0.0])


def test_task_forward_divides_by_temperature_and_applies_logq() -> None:
    task = RetrievalTask("retrieval", temperature=0.5, logq=True, full_softmax=False)
    user = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (B=2, D=2)
    items = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])  # (U=3, D=2)
    batch = _batch()
    out = task(TaskInputs(user=user, item=items[:2], items=items, batch=batch))
    # user @ items.T = [[1, .5, 0], [0, .5, 1]]; / 0.5 -> [[2, 1, 0], [0, 1, 2]]
    assert_close(out, torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]]))
    # row 0: [2 - ln 2, 1, 0], positive 0 -> ln((e^2/2 + e + 1) / (e^2/2))
    # row 1: [-ln 2, 1, 2], positive 1 -> ln((1/2 + e + e^2) / e)
    row0 = math.log((E**2 / 2 + E + 1) / (E**2 / 2))
    row1 = math.log((0.5 + E + E**2) / E)
    assert task.loss(out, batch).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    # ranking metrics need the full catalogue: evaluation computes them, not the task
    assert task.metrics(out.numpy(), out.numpy(), out.numpy()) == {}
    assert task.uses_tower is False


def test_full_softmax_ignores_logq() -> None:
    task = RetrievalTask("retrieval", temperature=1.0, logq=True, full_softmax=True)
    out = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    # no correction although log q is set: row 0 [2, 1, 0] positive 0 -> ln(1 + e^-1 + e^-2)
    # = 0.407606; row 1 [0, 1, 2] positive 1 -> ln(e^-1 + 1 + e) = 1.407606; mean 0.907606
    row0 = math.log(1 + math.exp(-1) + math.exp(-2))
    row1 = math.log(math.exp(-1) + 1 + E)
    assert (row0 + row1) / 2 == pytest.approx(0.907606, abs=1e-6)
    assert task.loss(out, _batch()).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def _build(n_items: int, full_softmax: bool | None):
    spec = EntitySpec(n_ids=5)
    cfg = RetrievalTaskConfig(name="retrieval", kind="retrieval", full_softmax=full_softmax)
    return build_task(
        cfg, rep_dim=4, dim=4, user_spec=spec, item_spec=spec, label_stats=None, n_items=n_items
    )


def test_build_task_full_softmax_default_by_catalogue_size() -> None:
    assert _build(5000, None).full_softmax is True
    assert _build(5001, None).full_softmax is False
    assert _build(10, False).full_softmax is False


def test_sampled_negatives_keep_the_automatic_softmax_sampled() -> None:
    # a small catalogue with negatives asked for samples them (the batches would refuse
    # negatives beside a softmax over every item)
    cfg = RetrievalTaskConfig(name="retrieval", kind="retrieval", negatives=64)
    assert cfg.softmax_over_catalogue(100, auto_max_items=5000) is False
    assert cfg.model_copy(update={"negatives": 0}).softmax_over_catalogue(100, 5000) is True


def test_full_softmax_with_negatives_is_an_error_naming_both_fields() -> None:
    with pytest.raises(ValueError, match=r"full_softmax = true.*negatives must be 0"):
        RetrievalTaskConfig(name="retrieval", kind="retrieval", full_softmax=True, negatives=8)


def test_build_task_unknown_kind_names_allowed_kinds() -> None:
    spec = EntitySpec(n_ids=5)
    cfg = RetrievalTaskConfig.model_construct(
        name="x", kind="ranking"
    )  # bypasses the Literal check
    with pytest.raises(ConfigError, match="retrieval, rating, binary, reconstruction"):
        build_task(
            cfg, rep_dim=4, dim=4, user_spec=spec, item_spec=spec, label_stats=None, n_items=3
        )


def test_a_users_own_items_are_no_negatives_when_asked() -> None:
    # Rows 0 and 1 over columns 0, 1, 2 (catalogue 10, 20, 30), no logQ. Row 0's history holds
    # column 2 (and a padded slot), row 1's history column 0 and its own positive column 1 (a
    # repeat: still the positive).
    # exclude_own_items: row 0 [2, 1, masked], positive 0 -> ln(1 + e^-1) = 0.313262;
    #   row 1 [masked, 1, 2], positive 1 -> ln(1 + e) = 1.313262; mean 0.813262.
    # by default: plain cross-entropy, ln(1 + e^-1 + e^-2) and ln(e^-1 + 1 + e).
    out = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    batch = make_batch(item_index=[10, 20, 30], item_pos=[0, 1])
    batch.history = torch.tensor([[0, 2], [0, 1]])
    batch.history_mask = torch.tensor([[False, True], [True, True]])
    masked = RetrievalTask("r", 1.0, logq=False, full_softmax=True, exclude_own_items=True)
    expected = (math.log(1 + 1 / E) + math.log(1 + E)) / 2
    assert expected == pytest.approx(0.813262, abs=1e-6)
    assert masked.loss(out, batch).item() == pytest.approx(expected, rel=1e-6)
    plain = RetrievalTask("r", 1.0, logq=False, full_softmax=True)
    both = math.log(1 + 1 / E + E**-2) + math.log(1 / E + 1 + E)
    assert plain.loss(out, batch).item() == pytest.approx(both / 2, rel=1e-6)


def test_a_window_rows_own_items_are_its_segments_places() -> None:
    # One packed row of five places: window A = places 0, 1 (columns 3, 1), window B = places
    # 2, 3 (columns 0, 2), place 4 padding. Rows read places 1 and 0 (A: columns 3 and 1, the
    # later place too) and 2 (B: columns 0 and 2); padding and the other window are not theirs.
    batch = make_batch(item_index=[10, 20, 30, 40], item_pos=[0, 3, 1])
    batch.history = torch.tensor([[3, 1, 0, 2, 0]])
    batch.history_mask = torch.tensor([[True, True, True, True, False]])
    batch.history_pos = torch.tensor([1, 0, 2])
    batch.history_segments = torch.tensor([[0, 0, 1, 1, -1]])
    own = own_columns(batch)
    assert own.tolist() == [[3, 1, -1, -1, -1], [3, 1, -1, -1, -1], [-1, -1, 0, 2, -1]]


def test_hidden_columns_are_masked_with_the_accidental_hits_never_the_positive() -> None:
    # Row 0: columns 0, 1, 2 hold items 10, 20, 10; positive column 0. Column 2 is an accidental
    # hit, column 1 is hidden, and hiding column 0 too is overruled: only the positive is left,
    # loss ln(1) = 0. Row 1: positive column 1 (item 20), no hit, nothing hidden (the (1, C)
    # hide broadcasts) but column 0: [masked, 1, 2] -> ln(1 + e) = 1.313262. Mean 0.656631.
    logits = torch.tensor([[2.0, 1.0, 3.0], [0.0, 1.0, 2.0]])
    args = (torch.tensor([0, 1]), torch.tensor([10, 20, 10]), torch.tensor([10, 20]))
    hide = torch.tensor([[True, True, False], [True, False, False]])
    loss = sampled_softmax_loss(logits, *args, hide=hide)
    assert loss.item() == pytest.approx(math.log(1 + E) / 2, rel=1e-6)
    assert torch.equal(hide, torch.tensor([[True, True, False], [True, False, False]]))  # as given
    broadcast = sampled_softmax_loss(logits, *args, hide=torch.tensor([[True, False, False]]))
    # row 0: positive 0 kept, hit 2 masked -> [2, 1, masked] -> ln(1 + e^-1); row 1 as above
    expected = (math.log(1 + 1 / E) + math.log(1 + E)) / 2
    assert broadcast.item() == pytest.approx(expected, rel=1e-6)
