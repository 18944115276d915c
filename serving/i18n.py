"""The UI's words in English and Simplified Chinese, and which of the two a browser gets.

Two kinds of text reach the page:

- Labels, buttons and placeholders laid out once: the UI passes `ui_text(key)` markers and the
  browser translates them (Gradio's I18n, built by `gradio_translations`). Gradio starts in the
  locale of `navigator.language`; our language switch changes it live and remembers the choice.
- Text the server makes at run time (toasts, answer headers, table columns, the admin's status):
  Gradio cannot translate it in the browser, so handlers call `tr(key, locale_of(request))`.

Both sides agree on the locale through the `chat_lang` cookie, which the page sets on load (the
saved choice, else the browser's language) and again when the switch is used. Callers without
the page (gradio_client, scripts) send no cookie and get their Accept-Language, else English.
"""

from __future__ import annotations

import re
import string
from typing import Any

LOCALES = {"en": "English", "zh-CN": "中文"}  # locale -> its name in itself, as the switch shows it
DEFAULT_LOCALE = "en"  # what a browser that asks for neither language gets
COOKIE = "chat_lang"  # the page's current locale, read by handlers (see LOAD_JS / SWITCH_JS)
SWITCH_LABEL = "🌐 Language · 语言"  # in both languages: findable whichever one is showing

# key -> (English, 简体中文). Keys are namespaced apart from Gradio's own (common., chatbot., ...).
# Strings the browser translates must not contain { or }: svelte-i18n reads them as ICU placeholders.
STRINGS: dict[str, tuple[str, str]] = {
    # ---- page and chat tab
    "app.intro": (
        "## Chat that learns\nRate answers with 👍/👎 (a 👎 can say why), edit an answer to show a better one, "
        "or compare several answers in the **Compare** tab. Everything you give trains the next version of "
        "the model.",
        "## 会学习的聊天助手\n用 👍/👎 给回答打分（点 👎 时可以说明原因），直接修改回答来示范更好的说法，"
        "或者在**比较**页里对比几个回答。您的每一条反馈都会用来训练下一版模型。",
    ),
    "tab.chat": ("Chat", "聊天"),
    "tab.compare": ("Compare", "比较"),
    "tab.admin": ("Admin", "管理"),
    "chat.history": ("Your conversations", "我的对话"),
    "chat.new": ("New conversation", "新对话"),
    "chat.chatbot": ("Chat", "对话"),
    "chat.message": ("Message", "消息"),  # the boxes' labels are read out by screen readers, not shown
    "chat.placeholder": ("Ask something…", "想问点什么？"),
    "chat.send": ("Send", "发送"),
    "chat.comment_placeholder": ("Add a comment to your last 👍/👎 (optional)",
                                 "给刚才的 👍/👎 补充几句说明（可选）"),
    "chat.comment": ("Comment", "说明"),
    "chat.add_comment": ("Add comment", "添加说明"),
    "chat.untitled": ("Untitled", "未命名"),
    "sampling": ("Sampling", "采样设置"),
    "sampling.temperature": ("Temperature", "温度"),
    "sampling.top_p": ("Top p", "Top p"),
    "sampling.max_tokens": ("Max new tokens", "最多生成的 token 数"),
    # thumbs-down reasons: the defaults of --feedback-options; other reasons are shown as given
    "reason.Wrong": ("Wrong", "内容有误"),
    "reason.Unhelpful": ("Unhelpful", "没有帮助"),
    "reason.Unsafe": ("Unsafe", "不安全"),
    "reason.Rude": ("Rude", "不礼貌"),
    "reason.Too long": ("Too long", "太啰嗦"),
    # ---- compare tab
    "compare.prompt": ("Prompt", "问题"),
    "compare.prompt_placeholder": ("One prompt, several answers: order them best to worst.",
                                   "一个问题，几个回答：请按从好到差排好顺序。"),
    "compare.k": ("Candidates (K)", "候选回答数 (K)"),
    "compare.generate": ("Generate", "生成"),
    "compare.answer": ("Answer", "回答"),
    "compare.rank": ("Rank (1 = best)", "名次（1 = 最好）"),
    "compare.submit": ("Submit ranking", "提交排序"),
    # ---- admin tab
    "admin.run": ("Run round now", "立即开始一轮训练"),
    "admin.refresh": ("Refresh", "刷新"),
    "admin.feedback_plot": ("Feedback per day", "每日反馈"),
    "admin.rounds": ("Alignment rounds (newest first)", "对齐训练轮次（最新的在前）"),
    "admin.round_pick": ("Round shown below: its stages, PPO curves and what it learned",
                         "下方显示哪一轮：它的各个阶段、PPO 曲线和学习结果"),
    "admin.reward_plot": ("Reward per PPO step", "每个 PPO 步的奖励"),
    "admin.kl_plot": ("KL per PPO step", "每个 PPO 步的 KL"),
    "admin.beta_plot": ("β per PPO step", "每个 PPO 步的 β"),
    "admin.adapters": ("Adapter versions (newest first)", "适配器版本（最新的在前）"),
    "admin.stages": ("Stages of the round (live while it runs)", "本轮的各个阶段（运行时实时更新）"),
    "admin.samples": ("Held-out prompts: the candidate's answer next to the reference's",
                      "留出问题：候选版本的回答与参照版本的回答并排对比"),
    "admin.version_pick": ("Serve (promote or roll back)", "切换线上版本（上线或回滚）"),
    "admin.activate": ("Activate", "启用"),
    "admin.sample_pick": ("Sample answers of candidate", "查看候选版本的示例回答"),
    # ---- messages the server makes at run time (tr); these may use str.format fields
    "msg.type_message": ("Type a message first.", "请先输入消息。"),
    "msg.vote_first": ("Rate an answer with 👍 or 👎 first.", "请先用 👍 或 👎 给一个回答打分。"),
    "msg.comment_saved": ("Comment saved.", "说明已保存。"),
    "msg.rewrite_saved": ("Thanks! Your better answer was saved; the original is kept too.",
                          "谢谢！您改写的回答已保存，原来的回答也会保留。"),
    "msg.type_prompt": ("Type a prompt first.", "请先输入问题。"),
    "msg.generate_first": ("Generate candidates first.", "请先生成候选回答。"),
    "msg.rank_each": ("Give each answer a different rank from 1 to {k}.",
                      "请给每个回答一个不同的名次（1 到 {k}）。"),
    "msg.ranking_saved": ("Ranking saved. Thank you!", "排序已保存，谢谢！"),
    "msg.no_round": ("No round yet.", "还没有训练轮次。"),
    "msg.no_adapter": ("No adapter yet.", "还没有适配器。"),
    "msg.pick_version": ("Pick a version (or 'base') to serve first.", "请先选择要启用的版本（或 base）。"),
    # the admin panel's sentences (serving.admin)
    "msg.admin_only": ("Only admins may use the admin tab.", "只有管理员可以使用管理页。"),
    "msg.admin_running": ("Round {id} is running ({trigger}{by}, {duration} so far): {progress}",
                          "第 {id} 轮正在运行（{trigger}{by}，已运行 {duration}）：{progress}"),
    "msg.admin_by": (" by {user}", "，发起人 {user}"),
    "msg.admin_starting": ("starting ...", "正在启动……"),
    "msg.admin_idle": ("No round is running. Scheduler: {reason}", "当前没有正在运行的训练轮次。调度器：{reason}"),
    "msg.admin_unchecked": ("The scheduler has not checked yet.", "调度器还没有检查过。"),
    "msg.admin_started": ("Started round {id}; its progress shows above and refreshes every few seconds.",
                          "第 {id} 轮已开始；进度显示在上方，每隔几秒刷新一次。"),
    "msg.admin_not_started": ("The round process could not start: {error}.", "训练进程没能启动：{error}。"),
    "msg.admin_serving": ("Now serving {served}; answers already streaming finish on what they started with.",
                          "现在由{served}提供服务；正在生成的回答仍由原来的版本完成。"),
    "msg.admin_base": ("the base model", "基础模型"),
    "msg.admin_adapter": ("adapter v{version}", "适配器 v{version}"),
    "msg.admin_still_running": ("Round {id} is still running: {n} PPO steps so far (latest: {progress}).",
                                "第 {id} 轮仍在运行：目前已有 {n} 个 PPO 步（最新进度：{progress}）。"),
    "msg.admin_no_adapter": ("Round {id} {status} without training an adapter ({n} PPO steps in its journal): "
                             "{error}",
                             "第 {id} 轮（{status}）没有训练出适配器（记录中有 {n} 个 PPO 步）：{error}"),
    "msg.admin_stages": ("Round {id}: {n} stages so far, with the time since the round started.",
                         "第 {id} 轮：目前共 {n} 个阶段，时间从本轮开始时算起。"),
    "msg.admin_no_journal": ("Round {id} left no journal of its stages (it ran elsewhere, or retention deleted "
                             "it with the round's log).",
                             "第 {id} 轮没有留下各阶段的记录（它在别处运行，或记录已随日志按保留策略删除）。"),
    "msg.admin_stage_registered": ("Registered candidate v{version}.", "已登记候选版本 v{version}。"),
    "msg.admin_learning": ("Round {id} ({status})", "第 {id} 轮（{status}）"),
    "msg.admin_rm": ("Reward model: {accuracy} held-out accuracy on {pairs} pairs.",
                     "奖励模型：在 {pairs} 个留出偏好对上的准确率为 {accuracy}。"),
    "msg.admin_rm_unmeasured": ("Reward model: no held-out pairs to measure its accuracy on.",
                                "奖励模型：没有留出的偏好对可用来衡量准确率。"),
    "msg.admin_rm_pending": ("Reward model: not trained yet.", "奖励模型：尚未训练完成。"),
    "msg.admin_gain": ("Reward gain of v{version} over {reference}: {gain}, {confidence} interval [{low}, {high}] "
                       "over {prompts} held-out prompts x {answers} answers.",
                       "v{version} 相对 {reference} 的奖励提升：{gain}，{confidence} 置信区间 [{low}, {high}]"
                       "（{prompts} 个留出问题 x 每题 {answers} 个回答）。"),
    "msg.admin_gain_pending": ("Reward gain: not evaluated yet.", "奖励提升：尚未评估。"),
    "msg.admin_gate": ("Gate: {verdict} (by {by}):", "上线关卡：{verdict}（由 {by} 决定）："),
    "msg.admin_gate_pending": ("Gate: not judged yet.", "上线关卡：尚未判定。"),
    "msg.admin_promoted": ("promoted", "已上线"),
    "msg.admin_rejected": ("rejected", "未通过"),
    "msg.admin_no_reason": ("no reason recorded", "未记录原因"),
    "msg.admin_no_steps": ("Round {id} (v{version}) recorded no PPO steps.", "第 {id} 轮（v{version}）没有记录 PPO 步。"),
    "msg.admin_steps": ("Round {id} (v{version}): {n} PPO steps.", "第 {id} 轮（v{version}）：共 {n} 个 PPO 步。"),
    "msg.admin_pruned": ("Adapter v{version}'s files were deleted by retention on {when}.",
                         "适配器 v{version} 的文件已于 {when} 按保留策略删除。"),
    "msg.admin_no_metrics": ("Adapter v{version} has no metrics.json at {path}.",
                             "适配器 v{version} 在 {path} 没有 metrics.json。"),
    "msg.admin_bad_metrics": ("Adapter v{version}'s metrics.json could not be read: {error}",
                              "适配器 v{version} 的 metrics.json 无法读取：{error}"),
    "msg.admin_samples": ("v{version} (mean reward {reward}) next to {reference} (mean reward {reference_reward}), "
                          "which served when the round ran",
                          "v{version}（平均奖励 {reward}）与训练时在线的 {reference}（平均奖励 {reference_reward}）对比"),
    "msg.admin_serves_now": ("; {serving} serves now", "；现在在线的是 {serving}"),
    "msg.admin_end": (".", "。"),
    # admin table columns (serving.admin's column names) and the feedback plot's axes and kinds
    "col.id": ("id", "编号"),
    "col.status": ("status", "状态"),
    "col.trigger": ("trigger", "触发方式"),
    "col.requested_by": ("requested by", "发起人"),
    "col.started": ("started", "开始时间"),
    "col.duration": ("duration", "用时"),
    "col.progress / error": ("progress / error", "进度 / 错误"),
    "col.adapter": ("adapter", "适配器"),
    "col.pairs": ("pairs", "偏好对"),
    "col.demonstrations": ("demonstrations", "改写示范"),
    "col.train prompts": ("train prompts", "训练问题数"),
    "col.eval prompts": ("eval prompts", "评估问题数"),
    "col.RM accuracy": ("RM accuracy", "奖励模型准确率"),
    "col.candidate reward": ("candidate reward", "候选奖励"),
    "col.reference reward": ("reference reward", "参照奖励"),
    "col.KL": ("KL", "KL"),
    "col.by": ("by", "发起"),
    "col.gain [interval]": ("gain [interval]", "奖励提升 [区间]"),
    "col.after": ("after", "用时"),
    "col.reasons / error": ("reasons / error", "理由 / 错误"),
    "col.stage": ("stage", "阶段"),
    "col.version": ("version", "版本"),
    "col.active": ("active", "在线"),
    "col.round": ("round", "轮次"),
    "col.created": ("created", "创建时间"),
    "col.activated": ("activated", "启用时间"),
    "col.reward gain": ("reward gain", "奖励提升"),
    "col.gain interval": ("gain interval", "提升置信区间"),
    "col.decision": ("decision", "决定"),
    "col.reasons": ("reasons", "理由"),
    "col.error": ("error", "错误"),
    "col.pruned": ("pruned", "文件清理时间"),
    "col.prompt": ("prompt", "问题"),
    "col.candidate answer": ("candidate answer", "候选回答"),
    "col.reference answer": ("reference answer", "参照回答"),
    "col.day": ("day", "日期"),
    "col.count": ("count", "数量"),
    "col.kind": ("kind", "类型"),
    "kind.votes": ("votes", "点赞/点踩"),
    "kind.rankings": ("rankings", "排序"),
    "kind.demonstrations": ("demonstrations", "改写示范"),
}


def catalogue(locale: str) -> dict[str, str]:
    """Every key in one locale (what gr.I18n sends the browser)."""
    column = list(LOCALES).index(locale)
    return {key: texts[column] for key, texts in STRINGS.items()}


def tr(key: str, locale: str, **fields: Any) -> str:
    """A server-made message in `locale` (unknown locales get English)."""
    texts = STRINGS[key]
    text = texts[list(LOCALES).index(locale)] if locale in LOCALES else texts[0]
    return text.format(**fields) if fields else text


def tr_or_same(key: str, text: str, locale: str) -> str:
    """`text` translated when the catalogue has `key`, else `text` itself (admins' own reasons)."""
    return tr(key, locale) if key in STRINGS else text


def fields_of(text: str) -> set[str]:
    """The str.format fields of a message: both languages must use the same ones."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


# ---------------------------------------------------------------------------- choosing a locale

def match_locale(tag: str | None) -> str | None:
    """A BCP 47 tag -> the locale we have for it: any Chinese gets Simplified Chinese (the only
    Chinese we have), any English gets English; None for anything else."""
    primary = (tag or "").strip().split("-")[0].split("_")[0].lower()
    return {"zh": "zh-CN", "en": "en"}.get(primary)


def from_accept_language(header: str | None) -> str | None:
    """The first language of an Accept-Language header (by q, then order) that we have."""
    ranked = []
    for position, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = re.search(r"q=([0-9.]+)", params)
        ranked.append((-float(q.group(1)) if q else -1.0, position, tag))
    for _, _, tag in sorted(ranked):
        if (locale := match_locale(tag)) is not None:
            return locale
    return None


def pick_locale(*, cookie: str | None, accept_language: str | None) -> str:
    """The page's choice (cookie), else the browser's languages, else English."""
    if cookie in LOCALES:
        return cookie
    return from_accept_language(accept_language) or DEFAULT_LOCALE


def locale_of(request: Any) -> str:
    """The locale of a gr.Request (or a Starlette request); English when there is none."""
    if request is None:
        return DEFAULT_LOCALE
    cookies = getattr(request, "cookies", None) or {}
    headers = getattr(request, "headers", None) or {}
    accept = headers.get("accept-language") or headers.get("Accept-Language")  # a plain dict is not case-blind
    return pick_locale(cookie=cookies.get(COOKIE), accept_language=accept)


def gradio_translations():
    """The catalogue as gr.I18n, for gr.mount_gradio_app(..., i18n=...)."""
    import gradio as gr

    return gr.I18n(**{locale: catalogue(locale) for locale in LOCALES})


def ui_text(key: str):
    """A marker the browser replaces with `key`'s text in its locale (a label laid out once)."""
    from gradio.i18n import I18nData

    if key not in STRINGS:
        raise KeyError(f"No UI text {key!r} in serving.i18n.STRINGS.")
    return I18nData(key)


# ---------------------------------------------------------------------------- the switch, in the browser

# Gradio has no API to change the locale from an app, but its own Settings page does it with the
# `changeLocale` export of its core module; importing that module again yields the same instance,
# so calling it switches every marker on the page at once. The cookie tells handlers the choice.
_APPLY_JS = """
    const apply = async (lang) => {
        document.cookie = `%(cookie)s=${lang}; path=/; max-age=31536000; samesite=lax`;
        const core = performance.getEntriesByType("resource").map((entry) => entry.name)
            .find((name) => /\\/assets\\/core-[^/]*\\.js$/.test(name));
        if (core) {
            (await import(core)).changeLocale(lang);
        } else {
            console.warn("Gradio's core module was not found; the page keeps the browser's language.");
        }
    };
""" % {"cookie": COOKIE}

# On page load: the saved choice, else the browser's language (any zh-* is Simplified Chinese here).
LOAD_JS = """async () => {%(apply)s
    const saved = localStorage.getItem("%(cookie)s");
    const browser = (navigator.language || "").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
    const lang = %(locales)s.includes(saved) ? saved : browser;
    await apply(lang);
    return lang;
}""" % {"apply": _APPLY_JS, "cookie": COOKIE, "locales": list(LOCALES)}

# When the user picks a language: switch now and keep the choice for the next visits.
SWITCH_JS = """async (lang) => {%(apply)s
    localStorage.setItem("%(cookie)s", lang);
    await apply(lang);
    return lang;
}""" % {"apply": _APPLY_JS, "cookie": COOKIE}


# ---------------------------------------------------------------------------- thumbs-down reasons

def reason_choices(reasons: list[str], locale: str) -> list[str]:
    """The chatbot's feedback options in `locale`: Like and Dislike (Gradio translates those
    itself) and each configured reason, translated when the catalogue knows it."""
    return ["Like", "Dislike", *(tr_or_same(f"reason.{r}", r, locale) for r in reasons)]


def reason_of(shown: str, reasons: list[str]) -> str:
    """The configured reason behind an option as shown in any locale: a vote stores the same
    reason whichever language the user reads, so training data does not split by language."""
    for reason in reasons:
        if shown in {tr_or_same(f"reason.{reason}", reason, locale) for locale in LOCALES} | {reason}:
            return reason
    return shown
