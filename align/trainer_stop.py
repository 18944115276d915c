"""A TrainerCallback that ends an HF/TRL Trainer's run after the optimizer step at which a should_stop()
says so: how SFT and the TRL policy methods (DPO, KTO) keep to a round's time budget (align.round)."""

from __future__ import annotations

from collections.abc import Callable

from transformers import TrainerCallback


class StopWhen(TrainerCallback):
    """Ends training after the optimizer step at which should_stop() first says so (never without one); the
    step is kept in stopped_at. With several ranks should_stop must agree on every rank (align.policy.Deadline
    does)."""

    def __init__(self, should_stop: Callable[[], bool] | None) -> None:
        self.should_stop = should_stop or (lambda: False)
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.stopped_at is None and self.should_stop():
            control.should_training_stop = True
            self.stopped_at = state.global_step
        return control
