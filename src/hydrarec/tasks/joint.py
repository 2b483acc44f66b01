"""JointLoss: one scalar from the task losses, L = sum_k c_k L_k, c_k set by ``[loss].weighting``.

Static weights w_k (each task's ``weight``) multiply in every mode; the reported weight of a task
is its effective multiplier c_k of L_k.

- ``static``: c_k = w_k.
- ``uncertainty`` (Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses",
  CVPR 2018): learned s_k = log sigma_k^2, L = sum_k w_k (exp(-s_k) L_k + s_k), c_k = w_k exp(-s_k).
  This is twice the paper's regression form (eq. 7: L_k / (2 sigma^2) + log sigma) for every task,
  i.e. the 0.5 factors are dropped on both terms together: same optimum s_k = log L_k.
- ``dwa`` (Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019, eq. 7):
  c_k = w_k K exp(r_k / T) / sum_j exp(r_j / T) with r_k = L_k(t-1) / L_k(t-2), the per-epoch mean
  losses reported to ``epoch_end``; 1 for the first two epochs.
- ``gradnorm`` (Chen et al., "GradNorm", ICML 2018): learned weights v_k, c_k = w_k v_k, balanced on
  the gradients of the model's shared parameters (given at construction). ``before_backward``
  (``gradnorm_step``) sets the gradient of v from the GradNorm loss only, the optimizer steps v
  with the model, and the next ``forward`` renormalises sum_k v_k = K.

Per step the trainer calls ``forward`` then ``before_backward`` (GradNorm's work), per epoch
``epoch_end`` (DWA's): it knows no mode.

Learned weights are parameters of this module: the optimizer must include ``parameters()`` (with no
weight decay) and the module must move to the model's device. ``state_dict`` holds all its state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hydrarec.config import LossConfig

_EPS = 1e-12  # guards loss ratios against a zero denominator


class JointLoss(nn.Module):
    """forward(losses) -> (total, {task: effective weight}); see the module docstring."""

    static: Tensor  # (K,) w_k
    dwa_losses: Tensor  # (2, K) dwa: mean losses of epochs t-2 and t-1
    dwa_epochs: Tensor  # () dwa: epochs reported so far
    dwa_weights: Tensor  # (K,) dwa: the current epoch's weights
    initial_losses: Tensor  # (K,) gradnorm: L_k at the first step
    gradnorm_started: Tensor  # () bool, gradnorm: initial_losses is set

    def __init__(
        self,
        task_names: list[str],
        cfg: LossConfig,
        static_weights: dict[str, float],
        shared_parameters: Sequence[Tensor] = (),  # GradNorm's W: model.shared_parameters()
    ) -> None:
        super().__init__()
        if set(static_weights) != set(task_names):
            raise ValueError(
                f"static weights are for {sorted(static_weights)}, tasks are {sorted(task_names)}"
            )
        self.task_names = list(task_names)
        self.weighting = cfg.weighting
        self.dwa_temperature = cfg.dwa_temperature
        self.gradnorm_alpha = cfg.gradnorm_alpha
        k = len(task_names)
        self.register_buffer("static", torch.tensor([static_weights[n] for n in task_names]))
        if self.weighting == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(k))  # s_k = log sigma_k^2
        elif self.weighting == "dwa":
            self.register_buffer("dwa_losses", torch.zeros(2, k))  # mean losses of t-2, t-1
            self.register_buffer("dwa_epochs", torch.zeros((), dtype=torch.long))
            self.register_buffer("dwa_weights", torch.ones(k))
        elif self.weighting == "gradnorm":
            if not shared_parameters:
                raise ValueError("weighting 'gradnorm' needs the shared parameters it balances")
            self.gradnorm_weights = nn.Parameter(torch.ones(k))  # v_k
            self.register_buffer("initial_losses", torch.zeros(k))  # L_k(0)
            self.register_buffer("gradnorm_started", torch.zeros((), dtype=torch.bool))
        self.shared_parameters = list(shared_parameters)  # the model's, not registered here
        self.last_weights: dict[str, float] = {}
        self._awaiting_gradnorm_step = False  # gradnorm: a training forward not yet followed up

    @property
    def differentiates_losses(self) -> bool:
        """Whether ``before_backward`` differentiates the task losses itself (GradNorm), which
        DDP's gradient hooks would take for part of the step's backward."""
        return self.weighting == "gradnorm"

    def _stack(self, losses: dict[str, Tensor]) -> Tensor:
        if set(losses) != set(self.task_names):
            raise ValueError(f"losses for {sorted(losses)}, expected {sorted(self.task_names)}")
        return torch.stack([losses[n].float() for n in self.task_names])  # (K,)

    def forward(self, losses: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        task_losses = self._stack(losses)  # (K,)
        if self.weighting == "gradnorm" and torch.is_grad_enabled():
            if self._awaiting_gradnorm_step:  # a trainer that never calls it would train static
                raise RuntimeError("weighting 'gradnorm': call before_backward after each forward")
            self._awaiting_gradnorm_step = True
        static = self.static.to(task_losses.device)
        if self.weighting == "uncertainty":
            precision = torch.exp(-self.log_vars)  # (K,)
            total = (static * (precision * task_losses + self.log_vars)).sum()
            weights = static * precision
        else:
            weights = static * self._fixed_weights()  # (K,)
            total = (weights * task_losses).sum()
        self.last_weights = dict(zip(self.task_names, weights.detach().tolist(), strict=True))
        return total, self.last_weights

    def _fixed_weights(self) -> Tensor:
        """Weights that receive no gradient from the total loss, as a (K,) tensor."""
        if self.weighting == "dwa":
            return self.dwa_weights
        if self.weighting == "gradnorm":
            with torch.no_grad():  # renormalise after the optimizer's step: sum v_k = K
                v = self.gradnorm_weights
                v.clamp_(min=1e-3).mul_(len(self.task_names) / v.sum())
            return self.gradnorm_weights.detach()  # v learns from the GradNorm loss only
        return torch.ones_like(self.static)

    def epoch_end(self, mean_losses: dict[str, float]) -> None:
        """Report the epoch's mean (unweighted) task losses; DWA sets the next epoch's weights."""
        if self.weighting != "dwa":
            return
        current = torch.tensor([float(mean_losses[n]) for n in self.task_names])
        self.dwa_losses.copy_(torch.stack([self.dwa_losses[1], current.to(self.dwa_losses)]))
        self.dwa_epochs.add_(1)
        if int(self.dwa_epochs) >= 2:
            ratio = self.dwa_losses[1] / self.dwa_losses[0].clamp(min=_EPS)  # r_k(t-1)
            k = len(self.task_names)
            self.dwa_weights.copy_(k * torch.softmax(ratio / self.dwa_temperature, dim=0))

    def before_backward(self, losses: dict[str, Tensor]) -> None:
        """The per-step work of the weighting, after ``forward`` and before the backward of the
        total: GradNorm sets the gradient of its weights; the other modes have none."""
        if self.weighting == "gradnorm":
            self.gradnorm_step(losses, self.shared_parameters)

    def gradnorm_step(self, losses: dict[str, Tensor], shared_params: Sequence[Tensor]) -> Tensor:
        """Set the gradient of the GradNorm weights; returns the GradNorm loss (detached).

        G_k = w_k v_k ||grad_W L_k|| over ``shared_params`` W (the last shared layer);
        target_k = mean(G) * (L~_k / mean(L~))^alpha with L~_k = L_k / L_k(0), held constant;
        L_grad = sum_k |G_k - target_k|. Call after ``forward`` and before ``backward`` of the
        total (the graph is kept). A task whose loss does not reach W has G_k = 0.
        """
        if self.weighting != "gradnorm":
            raise RuntimeError(f"gradnorm_step called with weighting {self.weighting!r}")
        task_losses = self._stack(losses)  # (K,)
        self._awaiting_gradnorm_step = False
        if not bool(self.gradnorm_started):
            self.initial_losses.copy_(task_losses.detach())
            self.gradnorm_started.fill_(True)
        norms = []
        for name in self.task_names:
            grads = torch.autograd.grad(
                losses[name], list(shared_params), retain_graph=True, allow_unused=True
            )
            squares = [g.float().pow(2).sum() for g in grads if g is not None]
            norms.append(
                torch.stack(squares).sum().sqrt() if squares else task_losses.new_zeros(())
            )
        grad_norms = torch.stack(norms).detach()  # (K,) ||grad_W L_k||
        v = self.gradnorm_weights
        g = self.static.to(v.device) * v * grad_norms.to(v.device)  # (K,) G_k, a function of v
        ratio = task_losses.detach().to(v.device) / self.initial_losses.clamp(min=_EPS)
        target = (g.mean() * (ratio / ratio.mean()) ** self.gradnorm_alpha).detach()  # (K,)
        gradnorm_loss = (g - target).abs().sum()
        (grad_v,) = torch.autograd.grad(gradnorm_loss, v)
        v.grad = grad_v if v.grad is None else v.grad + grad_v
        return gradnorm_loss.detach()
