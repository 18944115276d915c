"""The admin tab's data and actions, without Gradio: feedback per day, the rounds and adapters
tables, a round's PPO curves, a candidate's sample answers next to its reference's, "run a round
now" and promote/roll back. Everything here is a plain function of the store and the files a
round wrote, so it is tested without a browser or an engine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from serving.adapters import AdapterError
from serving.i18n import DEFAULT_LOCALE, tr
from storage.errors import Conflict, NotFound
from storage.store import Adapter, FeedbackStore, Round

BASE = "base"  # the activation choice that serves the base model without an adapter
FEEDBACK_KINDS = ("votes", "rankings", "demonstrations")
PPO_CURVES = ("reward", "kl", "beta")  # the per-step stats the tab plots (align/ppo.py ppo_step)
ROUND_COLUMNS = ["id", "status", "trigger", "requested_by", "started", "duration", "progress / error", "adapter",
                 "pairs", "demonstrations", "train prompts", "eval prompts", "RM accuracy", "candidate reward",
                 "reference reward", "KL"]
ADAPTER_COLUMNS = ["version", "status", "active", "round", "created", "activated", "reward gain", "gain interval",
                   "KL", "RM accuracy", "decision", "reasons", "error", "pruned"]
COUNT_COLUMNS = ["pairs", "demonstrations", "train prompts", "eval prompts"]  # whole numbers, blank if none
SAMPLE_COLUMNS = ["prompt", "candidate answer", "candidate reward", "reference answer", "reference reward"]


class AdminError(Exception):
    """An admin action that cannot happen; the message is a sentence for the admin."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Report:
    """A table for the tab plus one sentence saying what it shows (or why it is empty)."""

    frame: pd.DataFrame
    message: str


class AdminPanel:
    """Owns nothing on disk: reads the rounds and adapters tables, feedback counts and each
    adapter's DATA_DIR/adapters/<version>/metrics.json; starts rounds through `supervisor` and
    activates adapters through `adapters` (an AdapterManager). Sentences come in `locale`
    (serving.i18n); what other parts wrote (scheduler verdicts, round progress, errors) stays as
    written."""

    def __init__(self, *, store: FeedbackStore, adapters, supervisor, auth,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store = store
        self.adapters = adapters
        self.supervisor = supervisor
        self.auth = auth
        self.clock = clock  # for the duration of a round that still runs

    # ---- who may look --------------------------------------------------------------------

    def check_admin(self, user: str, *, locale: str = DEFAULT_LOCALE) -> None:
        if not self.auth.is_admin(user):
            raise AdminError(tr("msg.admin_only", locale))

    # ---- what the tab shows ----------------------------------------------------------------

    def feedback_per_day(self) -> pd.DataFrame:
        """One row per (day, kind): the long form a stacked bar plot reads."""
        rows = [{"day": d["day"], "kind": kind, "count": d[kind]}
                for d in self.store.feedback_per_day() for kind in FEEDBACK_KINDS]
        return pd.DataFrame(rows, columns=["day", "kind", "count"])

    def status_line(self, *, locale: str = DEFAULT_LOCALE) -> str:
        """The running round's latest progress line, or the scheduler's verdict when none runs."""
        running = self.store.running_round()
        if running is not None:
            by = tr("msg.admin_by", locale, user=running.requested_by) if running.requested_by else ""
            return tr("msg.admin_running", locale, id=running.id, trigger=running.trigger, by=by,
                      duration=_duration(running.started_at, None, self.clock()),
                      progress=running.progress or tr("msg.admin_starting", locale))
        due = self.supervisor.last_due
        schedule = due.reason if due is not None else tr("msg.admin_unchecked", locale)
        return tr("msg.admin_idle", locale, reason=schedule)

    def rounds_table(self, *, limit: int = 50) -> pd.DataFrame:
        """The newest rounds first, with what each one's adapter measured."""
        by_round = {a.round_id: a for a in self.store.adapters() if a.round_id is not None}
        now = self.clock()
        rows = [_round_row(r, by_round.get(r.id), now) for r in self.store.rounds(limit=limit)]
        # Nullable integers: a failed round's missing counts must not turn the others into floats.
        return pd.DataFrame(rows, columns=ROUND_COLUMNS).astype({c: "Int64" for c in COUNT_COLUMNS})

    def adapters_table(self) -> pd.DataFrame:
        """The newest versions first; `active` is what the engine serves right now."""
        serving = self.serving_version()
        rows = [_adapter_row(a, serving) for a in reversed(self.store.adapters())]
        return pd.DataFrame(rows, columns=ADAPTER_COLUMNS)

    def serving_version(self) -> int | None:
        return self.adapters.engine.active.adapter_version

    def round_choices(self) -> list[tuple[str, int]]:
        """(label, round id) for the PPO-curves picker, newest first."""
        return [(f"Round {r.id} ({r.status}" + (f", v{r.adapter_version})" if r.adapter_version else ")"), r.id)
                for r in self.store.rounds()]

    def default_round(self) -> int | None:
        """The round whose curves the tab opens on: the newest that trained an adapter, else the newest."""
        rounds = self.store.rounds()
        trained = [r.id for r in rounds if r.adapter_version is not None]
        return (trained or [r.id for r in rounds] or [None])[0]

    def version_choices(self) -> list[str]:
        """What the activate dropdown offers: 'base' and every version whose files are still there."""
        return [BASE] + [f"v{a.version}" for a in reversed(self.store.adapters()) if not a.pruned_at]

    def candidate_choices(self) -> list[str]:
        """Versions with samples to show, the undecided candidates first."""
        adapters = list(reversed(self.store.adapters()))
        ordered = [a for a in adapters if a.status == "candidate"] + [a for a in adapters if a.status != "candidate"]
        return [f"v{a.version}" for a in ordered if not a.pruned_at]

    def ppo_steps(self, round_id: int, *, locale: str = DEFAULT_LOCALE) -> Report:
        """Per-step PPO stats (reward, KL, beta, ...) of a round, read from its adapter's metrics.json."""
        try:
            round_ = self.store.round(int(round_id))
        except NotFound as e:
            raise AdminError(str(e)) from e
        empty = pd.DataFrame(columns=["step", *PPO_CURVES])
        if round_.status == "running":
            return Report(empty, tr("msg.admin_still_running", locale, id=round_.id,
                                    progress=round_.progress or tr("msg.admin_starting", locale)))
        if round_.adapter_version is None:
            return Report(empty, tr("msg.admin_no_adapter", locale, id=round_.id, status=round_.status,
                                    error=round_.error or tr("msg.admin_no_reason", locale)))
        metrics, missing = self._metrics(self.store.adapter(round_.adapter_version), locale)
        if metrics is None:
            return Report(empty, missing)
        steps = metrics.get("ppo_steps") or []
        frame = pd.DataFrame([{"step": i, **s} for i, s in enumerate(steps, start=1)])
        key = "msg.admin_steps" if steps else "msg.admin_no_steps"
        message = tr(key, locale, id=round_.id, version=round_.adapter_version, n=len(steps))
        return Report(empty if frame.empty else frame, message)

    def samples(self, version: str | int, *, locale: str = DEFAULT_LOCALE) -> Report:
        """A candidate's evaluation answers next to its reference's (the version that served when the
        round ran) on the same held-out prompts and the same seed."""
        adapter = self._adapter(version)
        metrics, missing = self._metrics(adapter, locale)
        if metrics is None:
            return Report(pd.DataFrame(columns=SAMPLE_COLUMNS), missing)
        ev = metrics.get("evaluation") or {}
        candidate, reference = ev.get("candidate") or {}, ev.get("reference") or {}
        rows = [_sample_row(c, r) for c, r in zip(candidate.get("samples", []), reference.get("samples", []))]
        return Report(pd.DataFrame(rows, columns=SAMPLE_COLUMNS),
                      _samples_caption(adapter.version, ev, self.serving_version(), locale))

    # ---- what the tab does -------------------------------------------------------------------

    def run_round(self, *, user: str, locale: str = DEFAULT_LOCALE) -> str:
        """Start a round now; refused (AdminError) while another round holds the lock."""
        self.check_admin(user, locale=locale)
        try:
            started = self.supervisor.start_round(trigger="admin", requested_by=user)
        except Conflict as e:
            raise AdminError(str(e)) from e
        except OSError as e:
            raise AdminError(tr("msg.admin_not_started", locale, error=e)) from e
        return tr("msg.admin_started", locale, id=started.id)

    async def activate(self, choice: str, *, user: str, locale: str = DEFAULT_LOCALE) -> str:
        """Promote or roll back: serve `choice` ('base' or 'v<N>') from the next request on."""
        self.check_admin(user, locale=locale)
        version = None if choice == BASE else self._adapter(choice).version
        try:
            active = await self.adapters.activate(version, by=user)
        except AdapterError as e:
            raise AdminError(e.message) from e
        return tr("msg.admin_serving", locale, served=_served(active.adapter_version, locale))

    # ---- helpers ------------------------------------------------------------------------------

    def _adapter(self, version: str | int) -> Adapter:
        text = str(version).strip().removeprefix("v")
        if not text.isdigit():
            raise AdminError(f"Adapter version {version!r} does not exist; pick 'v<N>' or '{BASE}'.")
        try:
            return self.store.adapter(int(text))
        except NotFound as e:
            raise AdminError(str(e)) from e

    @staticmethod
    def _metrics(adapter: Adapter, locale: str = DEFAULT_LOCALE) -> tuple[dict | None, str]:
        """The full metrics.json of an adapter, or None and a sentence saying why it cannot be read."""
        if adapter.pruned_at:
            return None, tr("msg.admin_pruned", locale, version=adapter.version, when=adapter.pruned_at)
        path = Path(adapter.path) / "metrics.json"
        try:
            return json.loads(path.read_text()), ""
        except FileNotFoundError:
            return None, tr("msg.admin_no_metrics", locale, version=adapter.version, path=path)
        except (OSError, ValueError) as e:  # JSONDecodeError is a ValueError
            return None, tr("msg.admin_bad_metrics", locale, version=adapter.version, error=e)


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table as JSON-ready rows: missing numbers become None (JSON has no NaN)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _round_row(r: Round, adapter: Adapter | None, now: datetime) -> dict[str, Any]:
    m = adapter.metrics if adapter else {}
    data = adapter.data if adapter else {}
    return {
        "id": r.id, "status": r.status, "trigger": r.trigger, "requested_by": r.requested_by or "",
        "started": _when(r.started_at), "duration": _duration(r.started_at, r.finished_at, now),
        "progress / error": r.error or r.progress or "",
        "adapter": f"v{r.adapter_version}" if r.adapter_version else "",
        "pairs": data.get("pairs"), "demonstrations": data.get("demonstrations"),
        "train prompts": data.get("train_prompts"), "eval prompts": data.get("eval_prompts"),
        "RM accuracy": m.get("rm_accuracy"), "candidate reward": (m.get("candidate") or {}).get("mean_reward"),
        "reference reward": (m.get("reference") or {}).get("mean_reward"),
        "KL": (m.get("candidate") or {}).get("kl_to_base"),
    }


def _adapter_row(a: Adapter, serving: int | None) -> dict[str, Any]:
    decision = a.decision or {}
    verdict = "" if not decision else f"{'promote' if decision.get('promote') else 'reject'} ({decision.get('by')})"
    return {
        "version": f"v{a.version}", "status": a.status, "active": a.version == serving, "round": a.round_id,
        "created": _when(a.created_at), "activated": _when(a.activated_at),
        "reward gain": a.metrics.get("reward_gain"), "gain interval": _interval(a.metrics),
        "KL": (a.metrics.get("candidate") or {}).get("kl_to_base"),
        "RM accuracy": a.metrics.get("rm_accuracy"), "decision": verdict,
        "reasons": " ".join(decision.get("reasons", [])), "error": a.error or "", "pruned": _when(a.pruned_at),
    }


def _sample_row(candidate: dict, reference: dict) -> dict[str, Any]:
    return {"prompt": candidate.get("prompt"), "candidate answer": candidate.get("answer"),
            "candidate reward": candidate.get("reward"), "reference answer": reference.get("answer"),
            "reference reward": reference.get("reward")}


def _served(version: int | None, locale: str) -> str:
    return tr("msg.admin_base", locale) if version is None else tr("msg.admin_adapter", locale, version=version)


def _samples_caption(version: int, ev: dict, serving: int | None, locale: str = DEFAULT_LOCALE) -> str:
    name = lambda v: tr("msg.admin_base", locale) if v is None else f"v{v}"  # noqa: E731
    ref = ev.get("reference_version")
    c, r = ev.get("candidate") or {}, ev.get("reference") or {}
    caption = tr("msg.admin_samples", locale, version=version, reward=_num(c.get("mean_reward")), reference=name(ref),
                 reference_reward=_num(r.get("mean_reward")))
    if ref != serving:
        caption += tr("msg.admin_serves_now", locale, serving=name(serving))
    return caption + tr("msg.admin_end", locale)


def _interval(metrics: dict) -> str:
    """The gate's interval on the reward gain as '95% [+0.050, +0.150]'; blank for a candidate without one."""
    interval, confidence = metrics.get("reward_gain_interval"), metrics.get("interval_confidence")
    if not (isinstance(interval, list) and len(interval) == 2 and isinstance(confidence, (int, float))):
        return ""
    return f"{confidence:.0%} [{_num(interval[0])}, {_num(interval[1])}]"


def _num(x: Any) -> str:
    return f"{x:+.3f}" if isinstance(x, (int, float)) else "?"


def _when(iso: str | None) -> str:
    """Stored ISO UTC time -> 'YYYY-MM-DD HH:MM:SS' (blank for never)."""
    return iso[:19].replace("T", " ") if iso else ""


def _duration(started: str, finished: str | None, now: datetime) -> str:
    end = datetime.fromisoformat(finished) if finished else now
    seconds = max(0, int((end - datetime.fromisoformat(started)).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}h " if hours else "") + f"{rest // 60}m {rest % 60:02d}s"
