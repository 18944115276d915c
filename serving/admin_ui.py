"""The Admin tab: lays out the loop's dashboard (feedback, rounds, one round's stages, PPO curves
and learning, live while it runs; adapters, samples, run-now, promote/roll back) and wires it to
`AdminPanel`, plus the same data as gradio_client endpoints. Only admins see the tab, but hiding it
is not security: every handler checks the caller again on the server."""

from __future__ import annotations

from typing import Callable

import gradio as gr
import pandas as pd

from serving.admin import SAMPLE_COLUMNS, STAGE_COLUMNS, AdminError, AdminPanel, records
from serving.i18n import STRINGS, locale_of, tr, ui_text as T

REFRESH_S = 2.0  # while the tab is open: how often the running round's progress line is re-read
DECIMALS = 3  # rewards, KL and accuracies in the tables
# Column widths (% of the table) of serving.admin's ROUND_VIEW_COLUMNS, ADAPTER_VIEW_COLUMNS, STAGE_COLUMNS and
# SAMPLE_COLUMNS: each short column keeps its header on one line at 1400 px; long text wraps in its cells.
# (The tab is about 1220 px wide in a 1400 px window; a monospace header letter takes about 8.4 px.)
ROUND_WIDTHS = ["4%", "7%", "9%", "10%", "7%", "25%", "7%", "5%", "10%", "12%", "4%"]
ADAPTER_WIDTHS = ["7%", "7%", "6%", "5%", "10%", "12%", "4%", "10%", "10%", "23%", "6%"]
STAGE_WIDTHS = ["10%", "90%"]
SAMPLE_WIDTHS = ["20%", "32%", "8%", "32%", "8%"]

UserOf = Callable[[gr.Request], str]


def _admin(panel: AdminPanel, user_of: UserOf, request: gr.Request) -> str:
    """The caller's name if they are an admin; otherwise the handler stops with an error."""
    user = user_of(request)
    try:
        panel.check_admin(user, locale=locale_of(request))
    except AdminError as e:
        raise gr.Error(e.message) from None
    return user


def _shown(frame: pd.DataFrame, locale: str) -> pd.DataFrame:
    """Display form: numbers rounded, missing values blank instead of 'nan', column names in the
    reader's language (the gradio_client endpoints keep serving.admin's English names)."""
    shown = frame.round(DECIMALS).astype(object).where(frame.notna(), "")
    return shown.rename(columns=lambda c: tr(f"col.{c}", locale) if f"col.{c}" in STRINGS else c)


def _feedback_plot(frame: pd.DataFrame, locale: str) -> gr.BarPlot:
    """Feedback per day with its kinds and axis titles in the reader's language."""
    kinds = frame.assign(kind=frame["kind"].map(lambda k: tr(f"kind.{k}", locale)))
    return gr.BarPlot(kinds, x_title=tr("col.day", locale), y_title=tr("col.count", locale),
                      color_title=tr("col.kind", locale))


class AdminTab:
    """The components of the tab; `build` lays them out inside the current Blocks."""

    def __init__(self, panel: AdminPanel, *, user_of: UserOf):
        self.panel = panel
        self.user_of = user_of

    def build(self, demo: gr.Blocks, *, other_tabs: list[gr.Tab]) -> None:
        with gr.Tab(T("tab.admin"), visible=False, elem_id="admin-tab") as self.tab:
            self._status_row()
            self.feedback = gr.BarPlot(x="day", y="count", color="kind", title=T("admin.feedback_plot"), height=260)
            self.rounds = gr.Dataframe(label=T("admin.rounds"), show_label=True, interactive=False, wrap=True,
                                       max_height=360, column_widths=ROUND_WIDTHS, elem_id="admin-rounds")
            self._round_section()
            self._adapters_row()
            self._samples_row()
            self.stamp = gr.State("")  # what the tables showed last: the timer redraws them only on change
            self.timer = gr.Timer(REFRESH_S, active=False)
        self._wire(demo, other_tabs)

    # ---- layout ------------------------------------------------------------------------------

    def _status_row(self) -> None:
        self.status = gr.Markdown(elem_id="admin-status")
        with gr.Row():
            self.run_btn = gr.Button(T("admin.run"), variant="primary", scale=1, elem_id="admin-run")
            self.refresh_btn = gr.Button(T("admin.refresh"), scale=1, elem_id="admin-refresh")

    def _round_section(self) -> None:
        self.round_pick = gr.Dropdown(label=T("admin.round_pick"), choices=[], value=None, elem_id="admin-round-pick")
        self.learning = gr.Markdown(elem_id="admin-learning")
        self.stages_note = gr.Markdown()
        self.stages = gr.Dataframe(label=T("admin.stages"), show_label=True, interactive=False, wrap=True,
                                   max_height=300, column_widths=STAGE_WIDTHS, elem_id="admin-stages")
        self.curves_note = gr.Markdown(elem_id="admin-curves-note")
        with gr.Row():
            self.reward_plot = gr.LinePlot(x="step", y="reward", title=T("admin.reward_plot"), height=240)
            self.kl_plot = gr.LinePlot(x="step", y="kl", title=T("admin.kl_plot"), height=240)
            self.beta_plot = gr.LinePlot(x="step", y="beta", title=T("admin.beta_plot"), height=240)

    def _adapters_row(self) -> None:
        self.adapters = gr.Dataframe(label=T("admin.adapters"), show_label=True, interactive=False, wrap=True,
                                     max_height=360, column_widths=ADAPTER_WIDTHS, elem_id="admin-adapters")
        with gr.Row():
            self.version_pick = gr.Dropdown(label=T("admin.version_pick"), choices=[], value=None, scale=3)
            self.activate_btn = gr.Button(T("admin.activate"), variant="stop", scale=1)

    def _samples_row(self) -> None:
        self.sample_pick = gr.Dropdown(label=T("admin.sample_pick"), choices=[], value=None)
        self.samples_note = gr.Markdown()
        self.samples = gr.Dataframe(label=T("admin.samples"), show_label=True, interactive=False, wrap=True,
                                    max_height=480, column_widths=SAMPLE_WIDTHS, elem_id="admin-samples")

    # ---- events ------------------------------------------------------------------------------

    def _wire(self, demo: gr.Blocks, other_tabs: list[gr.Tab]) -> None:
        tables = [self.status, self.feedback, self.rounds, self.adapters, self.round_pick, self.version_pick,
                  self.sample_pick, self.stamp, *self._round_outputs(), self.samples, self.samples_note]
        picks = [self.round_pick, self.sample_pick]
        demo.load(self.show_tab, None, [self.tab], api_visibility="private")
        self.tab.select(self.open, picks, [*tables, self.timer], api_visibility="private")
        for tab in other_tabs:  # polling stops while the admin looks elsewhere
            tab.select(lambda: gr.Timer(active=False), None, [self.timer], api_visibility="private")
        self.refresh_btn.click(self.refresh, picks, tables, api_name="admin_refresh",
                               api_visibility="undocumented")
        self.timer.tick(self.tick, [self.stamp, *picks], tables, show_progress="hidden",
                        api_visibility="private")
        self.round_pick.change(self.show_round, [self.round_pick], self._round_outputs(), api_visibility="private")
        self.sample_pick.change(self.show_samples, [self.sample_pick], [self.samples, self.samples_note],
                                api_visibility="private")
        self.run_btn.click(self.run_now, picks, tables, api_visibility="private")
        self.activate_btn.click(self.activate, [self.version_pick, *picks], tables, api_visibility="private")

    def show_tab(self, request: gr.Request):
        return gr.Tab(visible=self.panel.auth.is_admin(self.user_of(request)))

    def open(self, round_id, version, request: gr.Request):
        return {**self.refresh(round_id, version, request), self.timer: gr.Timer(active=True)}

    def _round_outputs(self) -> list:
        return [self.reward_plot, self.kl_plot, self.beta_plot, self.curves_note, self.stages, self.stages_note,
                self.learning]

    def refresh(self, round_id, version, request: gr.Request):
        """Everything but the samples (those follow their picker); the picked round's view too."""
        _admin(self.panel, self.user_of, request)
        locale = locale_of(request)
        rounds, adapters = self.panel.rounds_view(), self.panel.adapters_view()
        sample_choices = self.panel.candidate_choices()
        round_id = round_id or self.panel.default_round()
        # Without candidates the picker never changes, so the empty samples table gets its headers here.
        no_samples = {} if sample_choices else self._no_samples(locale)
        return {
            **self.round_view(round_id, locale), **no_samples,
            self.status: self.panel.status_line(locale=locale),
            self.feedback: _feedback_plot(self.panel.feedback_per_day(), locale),
            self.rounds: _shown(rounds, locale),
            self.adapters: _shown(adapters, locale),
            # An empty picker starts on the running (else newest trained) round / undecided candidate;
            # a chosen one stays.
            self.round_pick: gr.Dropdown(choices=self.panel.round_choices(), value=round_id),
            self.version_pick: gr.Dropdown(choices=self.panel.version_choices()),
            self.sample_pick: gr.Dropdown(choices=sample_choices,
                                          value=version or (sample_choices[0] if sample_choices else None)),
            self.stamp: _stamp(rounds, adapters),
        }

    def tick(self, stamp, round_id, version, request: gr.Request):
        """The progress line always, the picked round's view while it runs (its curves grow step by
        step); the tables only when a round or an adapter changed."""
        _admin(self.panel, self.user_of, request)
        if _stamp(self.panel.rounds_view(), self.panel.adapters_view()) != stamp:
            return self.refresh(round_id, version, request)
        status = {self.status: self.panel.status_line(locale=locale_of(request))}
        if self.panel.is_running(round_id):
            return {**status, **self.round_view(round_id, locale_of(request))}
        return status

    def show_round(self, round_id, request: gr.Request):
        _admin(self.panel, self.user_of, request)
        return self.round_view(round_id, locale_of(request))

    def round_view(self, round_id, locale: str) -> dict:
        """One round's stages, PPO curves and learning summary (the caller has checked the admin)."""
        if round_id is None:
            return {self.curves_note: tr("msg.no_round", locale), self.learning: "", self.stages_note: "",
                    self.stages: _shown(pd.DataFrame(columns=STAGE_COLUMNS), locale)}
        try:
            steps = self.panel.ppo_steps(int(round_id), locale=locale)
            stages = self.panel.round_stages(int(round_id), locale=locale)
            learning = self.panel.round_learning(int(round_id), locale=locale)
        except AdminError as e:
            raise gr.Error(e.message) from None
        return {self.reward_plot: steps.frame, self.kl_plot: steps.frame, self.beta_plot: steps.frame,
                self.curves_note: steps.message, self.stages: _shown(stages.frame, locale),
                self.stages_note: stages.message, self.learning: learning}

    def show_samples(self, version, request: gr.Request):
        _admin(self.panel, self.user_of, request)
        if not version:
            return self._no_samples(locale_of(request))
        try:
            report = self.panel.samples(version, locale=locale_of(request))
        except AdminError as e:
            raise gr.Error(e.message) from None
        return {self.samples: _shown(report.frame, locale_of(request)), self.samples_note: report.message}

    def _no_samples(self, locale: str) -> dict:
        return {self.samples: _shown(pd.DataFrame(columns=SAMPLE_COLUMNS), locale),
                self.samples_note: tr("msg.no_adapter", locale)}

    def run_now(self, round_id, version, request: gr.Request):
        user = _admin(self.panel, self.user_of, request)
        try:
            gr.Info(self.panel.run_round(user=user, locale=locale_of(request)))
        except AdminError as e:
            raise gr.Error(e.message) from None
        return self.refresh(None, version, request)  # None: the view follows the round just started

    async def activate(self, choice, round_id, version, request: gr.Request):
        user = _admin(self.panel, self.user_of, request)
        if not choice:
            raise gr.Error(tr("msg.pick_version", locale_of(request)))
        try:
            gr.Info(await self.panel.activate(choice, user=user, locale=locale_of(request)))
        except AdminError as e:
            raise gr.Error(e.message) from None
        return self.refresh(round_id, version, request)


def _stamp(rounds: pd.DataFrame, adapters: pd.DataFrame) -> str:
    return rounds.to_json() + adapters.to_json()


def admin_api(panel: AdminPanel, *, user_of: UserOf) -> None:
    """The admin tab's data and actions for scripts using gradio_client; admins only."""

    def admin_status(request: gr.Request = None) -> str:
        """The running round's progress, or the scheduler's verdict."""
        _admin(panel, user_of, request)
        return panel.status_line()

    def admin_feedback(request: gr.Request = None) -> list[dict]:
        """Votes, rankings and demonstrations per UTC day: [{day, kind, count}]."""
        _admin(panel, user_of, request)
        return records(panel.feedback_per_day())

    def admin_rounds(request: gr.Request = None) -> list[dict]:
        """Alignment rounds, newest first, with their adapter's data counts and evaluation."""
        _admin(panel, user_of, request)
        return records(panel.rounds_table())

    def admin_adapters(request: gr.Request = None) -> list[dict]:
        """Adapter versions, newest first, with status, gate decision and whether each serves now."""
        _admin(panel, user_of, request)
        return records(panel.adapters_table())

    def admin_ppo_steps(round_id: int, request: gr.Request = None) -> dict:
        """One round's PPO stats per step: {message, steps: [{step, reward, kl, beta, ...}]}."""
        _admin(panel, user_of, request)
        try:
            report = panel.ppo_steps(int(round_id))
        except AdminError as e:
            raise gr.Error(e.message) from None
        return {"message": report.message, "steps": records(report.frame)}

    def admin_samples(version: str, request: gr.Request = None) -> dict:
        """A candidate's evaluation answers next to its reference's: {message, samples: [...]}."""
        _admin(panel, user_of, request)
        try:
            report = panel.samples(version)
        except AdminError as e:
            raise gr.Error(e.message) from None
        return {"message": report.message, "samples": records(report.frame)}

    def admin_run_round(request: gr.Request = None) -> str:
        """Start an alignment round now; refused while one runs."""
        user = _admin(panel, user_of, request)
        try:
            return panel.run_round(user=user)
        except AdminError as e:
            raise gr.Error(e.message) from None

    async def admin_activate(version: str, request: gr.Request = None) -> str:
        """Serve adapter 'v<N>' (or 'base') from the next request on."""
        user = _admin(panel, user_of, request)
        try:
            return await panel.activate(version, user=user)
        except AdminError as e:
            raise gr.Error(e.message) from None

    for fn in (admin_status, admin_feedback, admin_rounds, admin_adapters, admin_ppo_steps, admin_samples,
               admin_run_round, admin_activate):
        gr.api(fn, api_name=fn.__name__)
