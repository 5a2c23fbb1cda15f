"""The supervised training loop the small classifiers share (the die judge, the cat attribute
classifier): Adam with a one-cycle learning rate, seeded shuffles and augmentation, a validation
record per epoch. torch; training only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from installation.progress import ProgressCallback


def fit_one_cycle(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int,
                  batch_size: int, learning_rate: float, gen: torch.Generator,
                  loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor],
                  validate: Callable[[], dict[str, Any]],
                  progress: ProgressCallback | None = None) -> list[dict[str, Any]]:
    """Train `model` in place; returns one record per epoch: its mean loss and `validate()`."""
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    steps_per_epoch = -(-len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate,
                                                total_steps=epochs * steps_per_epoch)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size:(step + 1) * batch_size]
            loss = loss_of(model(augment(x[idx], gen)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            if progress:
                progress(epoch * steps_per_epoch + step + 1, epochs * steps_per_epoch,
                         f"epoch {epoch + 1}/{epochs}")
        history.append({"epoch": epoch + 1, "loss": round(total / len(x), 5), **validate()})
    return history
