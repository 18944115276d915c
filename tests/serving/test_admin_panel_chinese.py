"""The admin panel speaks the admin's language: its own sentences in Chinese for a zh-CN reader,
while what other parts wrote (the scheduler's verdict, a round's progress line) stays as written.
The gradio_client endpoints pass no locale and keep English."""

import asyncio
from types import SimpleNamespace

import pytest
from sqlite_utils import Database

from loop.schedule import Due
from serving.admin import AdminError, AdminPanel
from serving.api import Auth
from serving.backend import ActiveModel
from storage.process import current_process
from storage.store import FeedbackStore


class Supervisor:
    def __init__(self, store):
        self.store = store
        self.last_due = Due(False, "3 new feedback events since the last round; 50 needed.")

    def start_round(self, *, trigger, requested_by=None):
        return self.store.round_lock.claim_round(trigger=trigger, requested_by=requested_by, process=current_process())


class Adapters:
    engine = SimpleNamespace(active=ActiveModel(name="base", adapter_version=None))

    async def activate(self, version, *, by):
        return self.engine.active


@pytest.fixture
def panel():
    store = FeedbackStore(Database(memory=True))
    return AdminPanel(store=store, adapters=Adapters(), supervisor=Supervisor(store),
                      auth=Auth({"alice": "a", "bob": "b"}, admins={"alice"}))


def test_status_and_actions_in_chinese(panel):
    assert panel.status_line(locale="zh-CN") == \
        "当前没有正在运行的训练轮次。调度器：3 new feedback events since the last round; 50 needed."
    assert panel.run_round(user="alice", locale="zh-CN") == "第 1 轮已开始；进度显示在上方，每隔几秒刷新一次。"
    assert panel.status_line(locale="zh-CN").startswith("第 1 轮正在运行（admin，发起人 alice，已运行 ")
    assert panel.status_line(locale="zh-CN").endswith("）：正在启动……")
    assert asyncio.run(panel.activate("base", user="alice", locale="zh-CN")) == \
        "现在由基础模型提供服务；正在生成的回答仍由原来的版本完成。"
    assert panel.ppo_steps(1, locale="zh-CN").message == "第 1 轮仍在运行：目前已有 0 个 PPO 步（最新进度：正在启动……）。"


def test_refusal_in_chinese_and_english_by_default(panel):
    with pytest.raises(AdminError, match="只有管理员可以使用管理页。"):
        panel.check_admin("bob", locale="zh-CN")
    with pytest.raises(AdminError, match="Only admins may use the admin tab."):
        panel.run_round(user="bob")
