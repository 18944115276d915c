"""Every table in the admin tab has a caption that says what it is, shown above it, and column widths for
each of its columns (so that the rounds table's headers stay on one line at 1400 px, not one letter per
line); the rounds and adapters tables show at most 11 short columns."""

from sqlite_utils import Database

import gradio as gr
from gradio.i18n import I18nData

from serving.admin import ADAPTER_VIEW_COLUMNS, ROUND_VIEW_COLUMNS, SAMPLE_COLUMNS, STAGE_COLUMNS, AdminPanel
from serving.admin_ui import AdminTab
from serving.api import Auth
from serving.i18n import STRINGS
from storage import FeedbackStore


def test_every_admin_table_has_a_caption_and_widths():
    store = FeedbackStore(Database(memory=True))
    tab = AdminTab(AdminPanel(store=store, adapters=None, supervisor=None, auth=Auth({})), user_of=lambda r: "")
    with gr.Blocks() as demo:
        tab.build(demo, other_tabs=[])
    tables = {t.elem_id: t for t in demo.blocks.values() if isinstance(t, gr.Dataframe)}
    columns = {"admin-rounds": ROUND_VIEW_COLUMNS, "admin-stages": STAGE_COLUMNS,
               "admin-adapters": ADAPTER_VIEW_COLUMNS, "admin-samples": SAMPLE_COLUMNS}

    assert sorted(tables) == sorted(columns)
    for elem_id, table in tables.items():
        assert isinstance(table.label, I18nData) and table.label.key in STRINGS and table.show_label, elem_id
        assert len(table.column_widths) == len(columns[elem_id]), elem_id
        assert sum(float(w.rstrip("%")) for w in table.column_widths) == 100, elem_id
    assert len(ROUND_VIEW_COLUMNS) <= 11 and len(ADAPTER_VIEW_COLUMNS) <= 11
    assert all(f"col.{c}" in STRINGS for c in ROUND_VIEW_COLUMNS + ADAPTER_VIEW_COLUMNS + STAGE_COLUMNS)
