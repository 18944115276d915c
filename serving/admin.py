"""The admin tab's data and actions, without Gradio: feedback per day, the rounds and adapters
tables, one round's stages, PPO curves and learning (reward model accuracy, the gate's interval and
decision) live while it runs, a candidate's sample answers next to its reference's, "run a round
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
from storage.records import Adapter, Round
from storage.round_journal import journal_path, read_entries
from storage.store import FeedbackStore

BASE = "base"  # the activation choice that serves the base model without an adapter
FEEDBACK_KINDS = ("votes", "rankings", "demonstrations")
PPO_CURVES = ("reward", "kl", "beta")  # the per-step stats the tab plots (align/ppo.py ppo_step)
ROUND_COLUMNS = ["id", "status", "trigger", "requested_by", "started", "duration", "progress / error", "adapter",
                 "pairs", "demonstrations", "train prompts", "eval prompts", "RM accuracy", "candidate reward",
                 "reference reward", "KL"]
ADAPTER_COLUMNS = ["version", "status", "active", "round", "created", "activated", "reward gain", "gain interval",
                   "KL", "RM accuracy", "decision", "reasons", "error", "pruned"]
# The rounds table as the tab shows it: fewer, shorter columns than ROUND_COLUMNS (which the
# gradio_client endpoint keeps), so that it reads at 1400 px; the evaluation's detail is in the
# round's learning summary and the adapters table.
ROUND_VIEW_COLUMNS = ["id", "status", "by", "started", "duration", "progress / error", "adapter", "pairs",
                      "RM accuracy", "gain [interval]", "KL"]
ADAPTER_VIEW_COLUMNS = ["version", "status", "active", "round", "created", "gain [interval]", "KL", "RM accuracy",
                        "decision", "reasons / error", "pruned"]  # adapters_table as the tab shows it, likewise
COUNT_COLUMNS = ["pairs", "demonstrations", "train prompts", "eval prompts"]  # whole numbers, blank if none
STAGE_COLUMNS = ["after", "stage"]
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

    def __init__(self, *, store: FeedbackStore, adapters, supervisor, auth, data_dir: str | Path | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.store = store
        self.data_dir = data_dir  # where rounds keep their journals (storage.round_journal); None: no journals
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
        running = self.store.round_lock.running_round()
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
        by_round = {a.round_id: a for a in self.store.registry.adapters() if a.round_id is not None}
        now = self.clock()
        rows = [_round_row(r, by_round.get(r.id), now) for r in self.store.round_lock.rounds(limit=limit)]
        # Nullable integers: a failed round's missing counts must not turn the others into floats.
        return pd.DataFrame(rows, columns=ROUND_COLUMNS).astype({c: "Int64" for c in COUNT_COLUMNS})

    def rounds_view(self, *, limit: int = 50) -> pd.DataFrame:
        """rounds_table as the tab shows it (ROUND_VIEW_COLUMNS)."""
        by_round = {a.round_id: a for a in self.store.registry.adapters() if a.round_id is not None}
        now = self.clock()
        rows = [_round_view_row(r, by_round.get(r.id), now) for r in self.store.round_lock.rounds(limit=limit)]
        return pd.DataFrame(rows, columns=ROUND_VIEW_COLUMNS).astype({"pairs": "Int64"})

    def adapters_table(self) -> pd.DataFrame:
        """The newest versions first; `active` is what the engine serves right now."""
        serving = self.serving_version()
        rows = [_adapter_row(a, serving) for a in reversed(self.store.registry.adapters())]
        return pd.DataFrame(rows, columns=ADAPTER_COLUMNS)

    def adapters_view(self) -> pd.DataFrame:
        """adapters_table as the tab shows it (ADAPTER_VIEW_COLUMNS)."""
        serving = self.serving_version()
        rows = [_adapter_view_row(a, serving) for a in reversed(self.store.registry.adapters())]
        return pd.DataFrame(rows, columns=ADAPTER_VIEW_COLUMNS)

    def serving_version(self) -> int | None:
        return self.adapters.engine.active.adapter_version

    def round_choices(self) -> list[tuple[str, int]]:
        """(label, round id) for the PPO-curves picker, newest first."""
        return [(f"Round {r.id} ({r.status}" + (f", v{r.adapter_version})" if r.adapter_version else ")"), r.id)
                for r in self.store.round_lock.rounds()]

    def default_round(self) -> int | None:
        """The round the tab opens on: the running one, else the newest that trained an adapter, else the newest."""
        running = self.store.round_lock.running_round()
        if running is not None:
            return running.id
        rounds = self.store.round_lock.rounds()
        trained = [r.id for r in rounds if r.adapter_version is not None]
        return (trained or [r.id for r in rounds] or [None])[0]

    def is_running(self, round_id: int | None) -> bool:
        running = self.store.round_lock.running_round()
        return running is not None and round_id is not None and running.id == int(round_id)

    def version_choices(self) -> list[str]:
        """What the activate dropdown offers: 'base' and every version whose files are still there."""
        return [BASE] + [f"v{a.version}" for a in reversed(self.store.registry.adapters()) if not a.pruned_at]

    def candidate_choices(self) -> list[str]:
        """Versions with samples to show, the undecided candidates first."""
        adapters = list(reversed(self.store.registry.adapters()))
        ordered = [a for a in adapters if a.status == "candidate"] + [a for a in adapters if a.status != "candidate"]
        return [f"v{a.version}" for a in ordered if not a.pruned_at]

    def ppo_steps(self, round_id: int, *, locale: str = DEFAULT_LOCALE) -> Report:
        """Per-step PPO stats (reward, KL, beta, ...) of a round: while it runs, the steps its journal has
        so far; once it trained an adapter, those in the adapter's metrics.json."""
        round_ = self._round(round_id)
        so_far = _journal_steps(self._journal(round_.id))
        if round_.status == "running":
            return Report(_steps_frame(so_far), tr("msg.admin_still_running", locale, id=round_.id, n=len(so_far),
                                                   progress=round_.progress or tr("msg.admin_starting", locale)))
        if round_.adapter_version is None:
            return Report(_steps_frame(so_far), tr("msg.admin_no_adapter", locale, id=round_.id, status=round_.status,
                                                   n=len(so_far),
                                                   error=round_.error or tr("msg.admin_no_reason", locale)))
        metrics, missing = self._metrics(self.store.registry.adapter(round_.adapter_version), locale)
        if metrics is None:
            return Report(_steps_frame(so_far), missing)
        # PPO's steps (older rounds have only these), else any policy method's own
        steps = metrics.get("ppo_steps") or (metrics.get("policy") or {}).get("steps") or so_far
        key = "msg.admin_steps" if steps else "msg.admin_no_steps"
        return Report(_steps_frame(steps), tr(key, locale, id=round_.id, version=round_.adapter_version, n=len(steps)))

    def round_stages(self, round_id: int, *, locale: str = DEFAULT_LOCALE) -> Report:
        """A round's stage sentences from its journal, each with the time since the round started, and how
        it ended; the training steps themselves are the curves (ppo_steps)."""
        round_ = self._round(round_id)
        entries = [e for e in self._journal(round_.id) if not e.get("quiet")]
        rows = [{"after": _duration(round_.started_at, e.get("at"), self.clock()), "stage": e["line"]}
                for e in entries]
        if round_.finished_at:
            ended = round_.error or tr("msg.admin_stage_registered", locale, version=round_.adapter_version)
            rows.append({"after": _duration(round_.started_at, round_.finished_at, self.clock()), "stage": ended})
        key = "msg.admin_stages" if entries else "msg.admin_no_journal"
        return Report(pd.DataFrame(rows, columns=STAGE_COLUMNS), tr(key, locale, id=round_.id, n=len(entries)))

    def round_learning(self, round_id: int, *, locale: str = DEFAULT_LOCALE) -> str:
        """What a round learned, as Markdown: the reward model's held-out accuracy (from the journal as soon
        as it is trained), the candidate's reward gain with the gate's interval, and the gate's decision
        with every sentence it gave."""
        round_ = self._round(round_id)
        adapter = self.store.registry.adapter(round_.adapter_version) if round_.adapter_version else None
        head = tr("msg.admin_learning", locale, id=round_.id, status=round_.status)
        lines = [f"**{head}**", "", "- " + _rm_line(adapter, self._journal(round_.id), locale),
                 "- " + _gain_line(adapter, locale)]
        if adapter is not None:
            lines += _gate_lines(adapter, locale)
        return "\n".join(lines)

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

    def _round(self, round_id: int):
        try:
            return self.store.round_lock.round(int(round_id))
        except NotFound as e:
            raise AdminError(str(e)) from e

    def _journal(self, round_id: int) -> list[dict]:
        return read_entries(journal_path(self.data_dir, round_id)) if self.data_dir is not None else []

    def _adapter(self, version: str | int) -> Adapter:
        text = str(version).strip().removeprefix("v")
        if not text.isdigit():
            raise AdminError(f"Adapter version {version!r} does not exist; pick 'v<N>' or '{BASE}'.")
        try:
            return self.store.registry.adapter(int(text))
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


def _round_view_row(r: Round, adapter: Adapter | None, now: datetime) -> dict[str, Any]:
    full = _round_row(r, adapter, now)
    return {
        "id": r.id, "status": r.status, "by": r.trigger + (f" · {r.requested_by}" if r.requested_by else ""),
        "started": full["started"][:16], "duration": full["duration"], "progress / error": full["progress / error"],
        "adapter": full["adapter"], "pairs": full["pairs"], "RM accuracy": full["RM accuracy"],
        "gain [interval]": _gain(adapter.metrics) if adapter else "", "KL": full["KL"],
    }


def _journal_steps(entries: list[dict]) -> list[dict]:
    """The training steps' stats in a round's journal (its quiet lines that carry numbers)."""
    return [e["stats"] for e in entries if e.get("quiet") and isinstance(e.get("stats"), dict)]


def _steps_frame(steps: list[dict]) -> pd.DataFrame:
    """One row per step, numbered from 1, with every curve's column even when a method lacks one."""
    frame = pd.DataFrame([{"step": i, **s} for i, s in enumerate(steps, start=1)])
    extra = [c for c in frame.columns if c not in ("step", *PPO_CURVES)]
    return frame.reindex(columns=["step", *PPO_CURVES, *extra])


def _rm_line(adapter: Adapter | None, journal: list[dict], locale: str) -> str:
    """The reward model's accuracy: the registered candidate's, else what the running round reported."""
    measured = adapter.metrics if adapter else next(
        (e["stats"] for e in reversed(journal) if "rm_accuracy" in (e.get("stats") or {})), None)
    if measured is None:
        return tr("msg.admin_rm_pending", locale)
    accuracy, pairs = measured.get("rm_accuracy"), measured.get("rm_held_out_pairs")
    if not isinstance(accuracy, (int, float)):
        return tr("msg.admin_rm_unmeasured", locale)
    return tr("msg.admin_rm", locale, accuracy=f"{accuracy:.1%}", pairs=pairs)


def _gain_line(adapter: Adapter | None, locale: str) -> str:
    m = adapter.metrics if adapter else {}
    interval, confidence = m.get("reward_gain_interval"), m.get("interval_confidence")
    if not (isinstance(interval, list) and len(interval) == 2 and isinstance(confidence, (int, float))):
        return tr("msg.admin_gain_pending", locale)
    return tr("msg.admin_gain", locale, version=adapter.version, reference=_version_name(m.get("reference_version"),
                                                                                           locale),
              gain=_num(m.get("reward_gain")), confidence=f"{confidence:.0%}", low=_num(interval[0]),
              high=_num(interval[1]), prompts=m.get("eval_prompts"), answers=m.get("answers_per_prompt"))


def _gate_lines(adapter: Adapter, locale: str) -> list[str]:
    """The gate's verdict and every sentence it gave (as loop.gate wrote them), one bullet each."""
    decision = adapter.decision
    if not decision:
        return ["- " + tr("msg.admin_gate_pending", locale)]
    verdict = tr("msg.admin_promoted" if decision.get("promote") else "msg.admin_rejected", locale)
    return ["- " + tr("msg.admin_gate", locale, verdict=verdict, by=decision.get("by")),
            *(f"  - {reason}" for reason in decision.get("reasons", []))]


def _version_name(version: int | None, locale: str) -> str:
    return tr("msg.admin_base", locale) if version is None else f"v{version}"


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


def _adapter_view_row(a: Adapter, serving: int | None) -> dict[str, Any]:
    full = _adapter_row(a, serving)
    return {**{k: full[k] for k in ("version", "status", "active", "round", "KL", "RM accuracy", "decision")},
            "created": full["created"][:16], "gain [interval]": _gain(a.metrics),
            "reasons / error": " ".join(filter(None, (full["reasons"], full["error"]))), "pruned": full["pruned"][:16]}


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


def _gain(metrics: dict) -> str:
    """The reward gain and its interval as '+0.300 [+0.100, +0.500]'; blank for a candidate without them."""
    interval = metrics.get("reward_gain_interval")
    if not (isinstance(interval, list) and len(interval) == 2):
        return _num(metrics["reward_gain"]) if isinstance(metrics.get("reward_gain"), (int, float)) else ""
    return f"{_num(metrics.get('reward_gain'))} [{_num(interval[0])}, {_num(interval[1])}]"


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
    """'1h 2m 03s' from `started` to `finished` (ISO times), or to `now` while it runs."""
    end = datetime.fromisoformat(finished) if finished else now
    seconds = max(0, int((end - datetime.fromisoformat(started)).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}h " if hours else "") + f"{rest // 60}m {rest % 60:02d}s"
