"""The processes of one round under `accelerate launch` / torchrun: which one this is, the device it
trains on, and the few collective operations a round needs. With one process (plain `python -m align
...`) every operation is a no-op that hands back what it was given, so single-process training runs
exactly the arithmetic it ran before.

accelerate's PartialState joins the launcher's process group and picks the device: the HF Trainer
behind the SFT and reward-model stages reads that same state, so all stages agree on ranks and
devices. PPO's reductions use torch.distributed directly rather than `Accelerator.prepare`: that would
wrap the policy in DistributedDataParallel, whose forward is not the one `generate()` and
`disable_adapter()` (the reference pass) go through, and the value head would have to move into the
same module. One all_reduce of the LoRA and value-head gradients per minibatch does what DDP does,
in plain sight.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")


class MainProcessFailed(RuntimeError):
    """Rank 0 could not start the round (refused, no data, unreachable app); the other ranks stop with its
    message instead of waiting for a round that will not come."""


class LauncherStopped(RuntimeError):
    """The launcher sent SIGTERM: another rank failed (the launcher stops all of them) or it was interrupted."""


class Ranks:
    """This process's place among the processes training one round: its rank, how many there are and its
    device; and the operations that keep them in step (reductions, gradient averaging, rank 0's start-up
    data). Owns nothing on disk."""

    def __init__(self, *, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu") -> None:
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self._shared = False  # rank 0 has sent the others what they wait for in `receive`

    def __repr__(self) -> str:
        return f"Ranks(rank={self.rank}, world_size={self.world_size}, device={self.device})"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    # ------------------------------------------------------------ batches and statistics

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous share of a batch every rank holds in full (rank 0 the first share)."""
        per_rank = len(items) // self.world_size
        return list(items[self.rank * per_rank : (self.rank + 1) * per_rank])

    def own_rows(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's rows (numbered within its share) in the order a permutation of the whole batch
        [world_size * share] lists them; with one process, the permutation itself."""
        per_rank = len(order) // self.world_size
        start = self.rank * per_rank
        return order[(order >= start) & (order < start + per_rank)] - start

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over the ranks: a detached copy, for statistics (advantage whitening, logged
        means), never for a loss."""
        if not self.distributed:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total)
        return total

    def mean_of(self, stats: dict[str, float]) -> dict[str, float]:
        """Each statistic averaged over the ranks, in one all_reduce. With equal shards, the mean of the
        ranks' per-episode means is the mean over the whole batch."""
        if not self.distributed:
            return stats
        values = torch.tensor(list(stats.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        return dict(zip(stats, (values / self.world_size).tolist()))

    # ------------------------------------------------------------ keeping the weights identical

    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over the ranks (one all_reduce for all of them), so the same
        optimizer step follows on every rank."""
        if not self.distributed:
            return
        params = list(params)
        for p in params:
            if p.grad is None:  # a parameter this rank's loss did not reach still takes part in the sum
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])  # [sum of numels]
        dist.all_reduce(flat)
        flat /= self.world_size
        for p, chunk in zip(params, flat.split([p.numel() for p in params])):
            p.grad.copy_(chunk.view_as(p.grad))

    def broadcast_parameters(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Give every rank rank 0's values: identical starting weights even if an initialisation drew
        different random numbers somewhere."""
        if not self.distributed:
            return
        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)

    # ------------------------------------------------------------ rank 0's start-up data

    def share(self, value: Any) -> None:
        """Rank 0: send `value` (picklable) to the ranks waiting in `receive`."""
        if self.distributed:
            self._broadcast(("ok", value))
            self._shared = True

    def receive(self) -> Any:
        """Other ranks: what rank 0 shares; raises MainProcessFailed with rank 0's error if it failed first."""
        kind, value = self._broadcast(None)
        if kind == "error":
            raise MainProcessFailed(f"Rank 0 stopped the round: {value}")
        return value

    @contextmanager
    def failures_shared(self) -> Iterator[None]:
        """Rank 0: an error raised inside the block before `share` is sent to the waiting ranks (then raised
        here as well), so they stop at once with its message instead of waiting for their timeout."""
        try:
            yield
        except BaseException as error:
            if self.distributed and not self._shared:
                self._broadcast(("error", f"{str(error) or type(error).__name__} ({type(error).__name__})"))
                self._shared = True
            raise

    def _broadcast(self, payload: Any) -> Any:
        if not self.distributed:
            return payload
        box = [payload]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]


ONE_PROCESS = Ranks()  # the default everywhere: plain single-process training on the CPU tensors it is given


def start_ranks(*, device: str, timeout_s: float) -> Ranks:
    """This process's Ranks. Under `accelerate launch` / torchrun (WORLD_SIZE > 1) this joins the
    launcher's process group (NCCL on GPUs, gloo on CPUs), each rank on the GPU of its local rank;
    alone, it is rank 0 of 1 on the accelerator when there is one. device='cpu' keeps everything on the
    CPU. Collective operations give up after timeout_s seconds instead of hanging."""
    from accelerate import PartialState

    cpu = device == "cpu" or not torch.accelerator.is_available()
    # The timeout only counts when this call creates the process group (PartialState is a singleton).
    state = PartialState(cpu=cpu, timeout=timedelta(seconds=timeout_s))
    ranks = Ranks(rank=state.process_index, world_size=state.num_processes, device=state.device)
    if ranks.distributed and ranks.is_main:
        stop_on_sigterm()
    log.info("Training as %s", ranks)
    return ranks


def stop_on_sigterm() -> None:
    """Turn the launcher's SIGTERM into an exception, so rank 0 still marks its round failed (the default
    action would end the process before any `except` runs)."""

    def raise_stopped(signum, frame):
        raise LauncherStopped("Stopped by the launcher (SIGTERM): another training process failed or the "
                              "launch was interrupted; the launcher's output shows that process's error.")

    signal.signal(signal.SIGTERM, raise_stopped)
