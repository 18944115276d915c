"""The app's side of the loop: start alignment rounds (by schedule or on request) as separate,
lower-priority processes, notice when they finish or die, put each new candidate through the
promotion gate and hot-swap the ones that pass.

The round itself is `python -m align run --round-id N`: the app claims the DB lock for it first
(so "run now" answers at once with the round or with who holds the lock), then the child adopts
the lock with its own pid, so a round killed with SIGKILL is recognisably dead to everyone. The
flags the app adds to every round (--align-args) are checked against the round's configs
(align.stage_configs) when the app starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from align.stage_configs import ConfigError, parse_stage_flags
from loop.gate import Decision, GateConfig, decide
from loop.schedule import Due, ScheduleConfig, round_due
from serving.adapters import AdapterError, AdapterManager
from common.eval_samples import EVAL_TOKEN_ENV, EVAL_URL_ENV
from serving.eval_sampling import EvalEndpoint
from storage.permissions import private_dir, private_file
from storage.process import current_process
from storage.records import Round
from storage.round_journal import JOURNAL_SUFFIX, ROUNDS_DIR
from storage.store import FeedbackStore

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
ROUND_LOGS = ROUNDS_DIR  # DATA_DIR/rounds/<id>.log, and the round's journal <id>.steps.jsonl beside it
# The only files in ROUND_LOGS that log retention deletes: a round's log and its journal go together.
ROUND_LOG_NAME = re.compile(r"(\d+)(\.log|" + re.escape(JOURNAL_SUFFIX) + ")")
# Keys are kept for days (--idempotency-days): sweeping hourly keeps the table within an hour of that,
# and the supervisor's tick is the app's one periodic task (the first tick, at start-up, sweeps too).
KEY_SWEEP_EVERY = timedelta(hours=1)
STOP_GRACE_S = 30  # a stopped round's time to exit on SIGTERM before the rest of its group gets SIGKILL
SET_BY_THE_APP = ("--data-dir", "--round-id", "--model")  # RoundSupervisor.round_command passes its own


def check_align_args(args: str) -> None:
    """--align-args as every round will read them: a flag `python -m align run` does not have, a value of
    the wrong type or one a round refuses is a ValueError with a sentence, so a typo stops the app as it
    starts instead of failing each round an hour later."""
    try:
        argv = shlex.split(args)
    except ValueError as e:
        raise ValueError(f"--align-args cannot be split into flags: {e}.") from None
    taken = [name for name in (flag.split("=", 1)[0] for flag in argv) if name in SET_BY_THE_APP]
    if taken:
        raise ValueError(f"--align-args must not set {', '.join(taken)}: the app gives every round its own "
                         f"--data-dir, --round-id and --model.")
    try:
        parse_stage_flags(argv)
    except ConfigError as e:
        raise ValueError(f"--align-args: {e}") from None


class RoundSupervisor:
    def __init__(self, *, store: FeedbackStore, adapters: AdapterManager, data_dir: str | Path, model: str,
                 schedule: ScheduleConfig, gate: GateConfig, eval_endpoint: EvalEndpoint | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store = store
        self.adapters = adapters
        self.data_dir = Path(data_dir)
        self.model = model
        self.schedule = schedule
        self.gate = gate
        # Where the round has the serving engine sample its evaluation answers (serving.eval_sampling);
        # None: it samples them in its own process.
        self.eval_endpoint = eval_endpoint
        self.clock = clock
        self.last_due: Due | None = None  # the scheduler's latest verdict, for the admin tab
        self._child: subprocess.Popen | None = None
        self._child_round: int | None = None
        self._child_started: datetime | None = None  # by self.clock, for --align-max-minutes
        self._keys_swept: datetime | None = None

    # ---- starting and watching rounds --------------------------------------------------

    def start_round(self, *, trigger: str, requested_by: str | None = None) -> Round:
        """Claim the lock and start `python -m align run` for it; raises storage.Conflict if a round runs."""
        claimed = self.store.round_lock.claim_round(trigger=trigger, requested_by=requested_by,
                                                    process=current_process())
        logs = private_dir(self.data_dir / ROUND_LOGS)
        log_path = private_file(logs / f"{claimed.id}.log")  # a round log quotes users' prompts
        command = [*self.round_command(claimed.id), *shlex.split(self.schedule.args)]
        try:
            with open(log_path, "w") as out:
                # A session (so a process group) of its own: stopping the round reaches every process
                # it started (training ranks, loader workers). No preexec_fn: running Python between
                # fork and exec in this threaded process can deadlock.
                self._child = subprocess.Popen(
                    command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=self.round_environment(), start_new_session=True,
                )
        except OSError as e:
            self.store.round_lock.finish_round(claimed.id, error=f"The round process could not start: {e}.")
            raise
        _lower_priority(self._child.pid, self.schedule.nice)
        self._child_round, self._child_started = claimed.id, self.clock()
        self._forget_old_logs(keep_also=claimed.id)
        self.store.round_lock.set_round_log(claimed.id, str(log_path))
        log.info("Started alignment round %d (%s%s), pid %d, log %s", claimed.id, trigger,
                 f" by {requested_by}" if requested_by else "", self._child.pid, log_path)
        return self.store.round_lock.round(claimed.id)

    def round_environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in (EVAL_URL_ENV, EVAL_TOKEN_ENV)}
        return {**env, "PYTHONUNBUFFERED": "1", **(self.eval_endpoint.environment() if self.eval_endpoint else {})}

    def round_command(self, round_id: int) -> list[str]:
        """The round process's command line, before the --align-args flags."""
        return [sys.executable, "-m", "align", "run", "--data-dir", str(self.data_dir), "--round-id", str(round_id),
                "--model", self.model]

    def _forget_old_logs(self, *, keep_also: int) -> None:
        """Keep the newest --align-keep-logs rounds' logs and journals (by round id) and the running
        round's; delete only files named like the ones rounds write."""
        keep = self.schedule.keep_logs
        if keep <= 0:
            return
        files: dict[int, list[Path]] = {}
        for p in (self.data_dir / ROUND_LOGS).iterdir():
            if p.is_file() and (m := ROUND_LOG_NAME.fullmatch(p.name)):
                files.setdefault(int(m[1]), []).append(p)
        for round_id in sorted(files, reverse=True)[keep:]:
            if round_id != keep_also:
                for p in files[round_id]:
                    p.unlink(missing_ok=True)

    def _watch_child(self) -> None:
        """Our round process exited: if it did not record its outcome, record a failure for it."""
        if self._child is None or self._child.poll() is None:
            return
        rc, round_id = self._child.returncode, self._child_round
        self._child = self._child_round = self._child_started = None
        running = self.store.round_lock.round(round_id)
        if running.status == "running":
            self.store.round_lock.finish_round(
                round_id, error=f"The round process {_how_it_ended(rc)} without finishing. "
                                f"Last progress: {running.progress or 'none'}; see "
                                f"{self.data_dir / ROUND_LOGS}/{round_id}.log.")
        finished = self.store.round_lock.round(round_id)
        log.info("Alignment round %d %s%s", round_id, finished.status,
                 f": {finished.error}" if finished.error else f" (candidate v{finished.adapter_version})")

    async def stop(self) -> None:
        """App shut-down: stop our round (it is recorded as failed, never half-registered)."""
        if self._child is not None and self._child.poll() is None:
            await self._stop_child("Stopped because the app shut down.")

    async def _stop_overdue(self) -> None:
        """Stop our round once it has run longer than --align-max-minutes: a hung round would hold
        the one-round lock for ever."""
        limit = self.schedule.max_minutes
        if self._child is None or self._child.poll() is not None or limit <= 0:
            return
        if self.clock() - self._child_started <= timedelta(minutes=limit):
            return
        log.warning("Alignment round %d has run longer than %g minutes; stopping it.", self._child_round, limit)
        await self._stop_child(f"Stopped after running longer than the {limit:g} minutes a round may take "
                               "(--align-max-minutes).")

    async def _stop_child(self, error: str) -> None:
        """Stop our round's whole process group (SIGTERM, SIGKILL after STOP_GRACE_S) and record the
        round as failed with `error` unless it finished first."""
        child, round_id = self._child, self._child_round
        _signal_group(child.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(child.wait, STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        # Also after a clean exit: processes the round started may outlive it in its group.
        _signal_group(child.pid, signal.SIGKILL)
        await asyncio.to_thread(child.wait)
        self._child = self._child_round = self._child_started = None
        if self.store.round_lock.round(round_id).status == "running":
            self.store.round_lock.finish_round(round_id, error=error)

    # ---- the loop ----------------------------------------------------------------------

    async def tick(self) -> None:
        """One pass: forget expired Idempotency-Keys (hourly), stop an overdue round, reap finished or
        dead rounds, judge new candidates, start a round if one is due."""
        self._forget_old_keys()
        await self._stop_overdue()
        self._watch_child()
        for dead in self.store.round_lock.reap_dead_rounds():
            log.warning("Alignment round %d died: %s", dead.id, dead.error)
        await self.judge_candidates()
        if self.store.round_lock.running_round() is None:
            self.last_due = self.due()
            if self.last_due.due:
                log.info("Starting a scheduled round: %s", self.last_due.reason)
                self.start_round(trigger="schedule")

    def _forget_old_keys(self) -> None:
        """Idempotency keys past their retention, at most once per KEY_SWEEP_EVERY."""
        now = self.clock()
        if self._keys_swept is not None and now - self._keys_swept < KEY_SWEEP_EVERY:
            return
        self._keys_swept = now
        forgotten = self.store.idempotency.forget_idempotency_keys()
        if forgotten:
            log.info("Forgot %d Idempotency-Keys older than %g days.", forgotten, self.store.config.idempotency_days)

    def due(self) -> Due:
        last = self.store.round_lock.rounds(limit=1)
        last_started = datetime.fromisoformat(last[0].started_at) if last else None
        return round_due(now=self.clock(), last_started=last_started,
                         new_feedback=self.store.feedback_since(last[0].started_at if last else None),
                         cfg=self.schedule)

    async def judge_candidates(self) -> None:
        """Gate every candidate no one has decided on yet, oldest first; promote those that pass. One
        the gate cannot judge is rejected with the reason, and the candidates behind it still are."""
        for adapter in self.store.registry.adapters():
            if adapter.status != "candidate" or adapter.decision is not None:
                continue
            try:  # loaded before the decision: a promotion is then a switch of milliseconds
                await self.adapters.prepare(adapter.version)
            except AdapterError as e:  # marked failed with the reason; the gate never sees it
                log.error("Adapter v%d cannot be served: %s", adapter.version, e.message)
                continue
            try:
                verdict = decide(adapter.metrics, active_version=self.adapters.engine.active.adapter_version,
                                 cfg=self.gate)
            except Exception as e:  # judged first on every tick otherwise, blocking every later candidate
                verdict = Decision(False, [f"The gate could not judge this candidate: {type(e).__name__}: {e}"])
            self.store.registry.set_adapter_decision(adapter.version, promote=verdict.promote,
                                                     reasons=verdict.reasons, by="gate")
            if not verdict.promote:
                log.info("Adapter v%d rejected: %s", adapter.version, " ".join(verdict.reasons))
                continue
            try:
                await self.adapters.activate(adapter.version, by="gate")
            except AdapterError as e:
                log.error("Adapter v%d passed the gate but could not be served: %s", adapter.version, e.message)

    async def run(self) -> None:
        """Tick forever (the app runs this as a background task); an error in one tick is logged."""
        while True:
            try:
                await self.tick()
            except Exception:  # the loop must outlive a bad tick; serving never depends on it
                log.exception("Alignment loop tick failed")
            await asyncio.sleep(self.schedule.check_s)


def _lower_priority(pid: int, nice: int) -> None:
    """Training yields the CPU to serving: `nice` more than the app's niceness. Set from here just
    after the start, while the new process is still one thread starting Python: Linux niceness is
    per thread and inherited by the threads and processes started later, so all of them get it."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, os.getpriority(os.PRIO_PROCESS, 0) + nice)
    except OSError as e:  # gone already (recorded by _watch_child), or a negative --align-nice unprivileged
        log.warning("Could not lower the priority of the round process %d: %s", pid, e)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # every process of the group has exited


def _how_it_ended(returncode: int) -> str:
    """Popen's -9 means "killed by signal 9": say that, since 'status -9' tells an admin nothing."""
    if returncode >= 0:
        return f"crashed (exit status {returncode})"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    return f"was killed ({name})"
