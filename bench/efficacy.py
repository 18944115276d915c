"""Learning efficacy: scripted users with a hidden rule give feedback through the real app, the app runs
its round by itself, and the rule's satisfaction on held-out prompts is measured before and after.

    python bench/efficacy.py --base-rates                       # every rule's rate on the base model
    python bench/efficacy.py                                    # the five rules, rankings + thumbs, 300 prompts
    python bench/efficacy.py --rule number --mix thumbs rankings+thumbs+rewrites --train-prompts 40
    python bench/efficacy.py --rule number --policy rloo        # the round gets --align-args "--policy rloo"
    python bench/efficacy.py --rule words_40_120 --align-args "--ppo-max-new-tokens 160" --label rollouts-160
                                                                # an experiment off the defaults, named
    python bench/efficacy.py --table                            # Markdown tables of bench/results/efficacy-*.json

Phases (the users and the admin use HTTP only):
1. collect: app.py (automatic rounds off) answers each training prompt with --n sampled candidates. The
   answers do not depend on the rule, so one collection (kept in --work-dir) serves every rule and mix.
2. per mix: a copy of the collected data dir, app.py on it with `--align-every 1s --align-min-feedback K`
   (K = the events this mix sends; every other flag at its default), and the users' feedback by the rule:
   rankings (candidates that satisfy it first; only when some do and some do not), 👍 for answers that
   satisfy it and 👎 with the rule's reason for the others, and rewrites (the first answer that breaks the
   rule, rewritten to satisfy it). The app starts the round itself once the K-th event is in.
3. after the round and the gate: --samples answers (temperature 1, the app's default max_tokens) per
   held-out prompt (never sent before) from the promoted adapter, or, if the gate rejected it, from the
   candidate activated by the admin (marked as such), then from the base model
   (POST /api/adapters/base/activate). Intervals: bootstrap over prompts, the difference paired per prompt.
Prompts are the first user turns of ../shared/data/hh-harmless-train.jsonl.gz (15-160 characters,
distinct, file order): the first --held-out-prompts are held out, the next --train-prompts train.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `python bench/efficacy.py` puts bench/ first on sys.path, where bench/serving.py would shadow the
# `serving` package; the repository root must come first instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import HH_TRAIN, machine_info, markdown_table, write_results  # noqa: E402
from bench.efficacy_app import (USERS, App, activate, finished_round, gate_outcome, post,  # noqa: E402
                                running_app, sample_many)
from bench.efficacy_rules import BENCHMARK_RULES, RULES, Rule  # noqa: E402
from bench.efficacy_stats import paired_difference, rate_summary  # noqa: E402
from common.flags import add_dataclass_args, from_namespace  # noqa: E402

MIXES = ("rankings+thumbs", "thumbs", "rankings+thumbs+rewrites")
BASE_RATE_BAND = (0.15, 0.70)  # a rule the base model almost never or almost always follows shows no learning


@dataclass
class EfficacyConfig:
    """One efficacy run: the users' rule and feedback mix, the prompts, the measurement, where files go."""

    rule: list[str] = field(
        default_factory=lambda: list(BENCHMARK_RULES),
        metadata={"help": f"The users' hidden rules, one run each (same collected candidates): among {', '.join(RULES)}."},
    )
    mix: list[str] = field(
        default_factory=lambda: ["rankings+thumbs"],
        metadata={"help": f"Feedback mixes to run, each on its own copy of the collected data: {', '.join(MIXES)}."},
    )
    policy: str = field(
        default="",  # empty: the round's own default recipe
        metadata={"help": "Policy stage for the round, passed as --align-args '--policy X' (empty: not passed)."},
    )
    align_args: str = field(
        default="",  # empty: the round on its defaults, as the targets are stated
        metadata={"help": "More flags for the round (after --policy), for experiments off the defaults, e.g. "
                          "'--ppo-max-new-tokens 160'. Name the run with --label."},
    )
    label: str = field(
        default="",
        metadata={"help": "Suffix of the variant's work dir and results file (e.g. 'rollouts-160'); needed with "
                          "--align-args, so an experiment never overwrites a default run."},
    )
    train_prompts: int = field(default=300, metadata={"help": "Prompts the users chat with and give feedback on."})
    n: int = field(default=4, metadata={"help": "Candidates per training prompt (the app's --max-n is 4)."})
    train_temperature: float = field(
        default=1.0, metadata={"help": "Sampling temperature of the training candidates (varied candidates to rank)."}
    )
    held_out_prompts: int = field(
        default=48, metadata={"help": "Held-out prompts the rule is measured on (never sent before the round)."}
    )
    samples: int = field(default=4, metadata={"help": "Sampled answers per held-out prompt, per model measured."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the measured answers."})
    measure_rejected: bool = field(
        default=True, metadata={"help": "If the gate rejects the candidate, activate it anyway and measure it."}
    )
    round_timeout_min: float = field(
        default=75.0,  # the app's own round limit is 60 min; past that the round is failed anyway
        metadata={"help": "Longest wait for the automatic round to finish, in minutes."},
    )
    concurrency: int = field(default=8, metadata={"help": "Chat requests in flight at once (vLLM batches them)."})
    work_dir: str = field(
        default="/tmp/efficacy",
        metadata={"help": "Where the collected data dir and each mix's copy live (GBs over many runs)."},
    )
    model_dir: str = field(default="data", metadata={"help": "Data dir holding the prepared default model."})
    out_dir: str = field(default="bench/results", metadata={"help": "Where the JSON results go."})
    seed: int = field(default=0, metadata={"help": "Seed of the bootstrap intervals."})
    base_rates: bool = field(
        default=False, metadata={"help": "Only measure every rule's rate on the base model (held-out prompts)."}
    )
    table: bool = field(default=False, metadata={"help": "Only print Markdown tables of the results in --out-dir."})


def parse_config(argv: list[str] | None = None) -> EfficacyConfig:
    parser = argparse.ArgumentParser(description="Does feedback by a hidden rule make the served model follow it?")
    add_dataclass_args(parser, EfficacyConfig)
    cfg = from_namespace(EfficacyConfig, parser.parse_args(argv))
    unknown = [r for r in cfg.rule if r not in RULES]
    if unknown:
        parser.error(f"--rule must be among {', '.join(RULES)}; got {', '.join(unknown)}.")
    unknown = [m for m in cfg.mix if m not in MIXES]
    if unknown:
        parser.error(f"--mix must be among {', '.join(MIXES)}; got {', '.join(unknown)}.")
    if cfg.align_args and not cfg.label:
        parser.error("--align-args needs --label: a run off the defaults must not take a default run's file name.")
    return cfg


# ---------------------------------------------------------------- prompts and machine

def hh_prompts() -> list[str]:
    """Distinct, short first user turns of HH-RLHF's harmless train split, in file order."""
    seen, out = set(), []
    with gzip.open(HH_TRAIN, "rt") as f:
        for line in f:
            text = json.loads(line)["prompt"][0]["content"].strip()
            if 15 <= len(text) <= 160 and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def split_prompts(cfg: EfficacyConfig) -> tuple[list[str], list[str]]:
    """(held_out, train): disjoint, the held-out ones first in the file."""
    pool = hh_prompts()
    held_out, train = pool[:cfg.held_out_prompts], pool[cfg.held_out_prompts:cfg.held_out_prompts + cfg.train_prompts]
    if len(train) < cfg.train_prompts:
        raise SystemExit(f"Only {len(train)} training prompts are left after {cfg.held_out_prompts} held out.")
    return held_out, train


def model_path(cfg: EfficacyConfig) -> str:
    from common.models import prepare_default_model

    return str(prepare_default_model(cfg.model_dir))


def is_degenerate(text: str) -> bool:
    from align.evaluate import is_degenerate as degenerate  # the gate's own definition (imports torch)

    return degenerate(text)


# ---------------------------------------------------------------- measuring answers

def answer_summary(rule: Rule, answers: list[list[dict]], *, seed: int) -> dict:
    """The rule's rate, degenerate and cut-off rates and mean length of answers [prompt][sample]."""
    flat = [a["text"] for group in answers for a in group]
    return {"rule": rate_summary([[rule.check(a["text"]) for a in g] for g in answers], seed=seed),
            "degenerate_rate": sum(map(is_degenerate, flat)) / len(flat),
            "cut_off_rate": sum(a["finish_reason"] == "length" for g in answers for a in g) / len(flat),
            "mean_words": sum(len(t.split()) for t in flat) / len(flat),
            "adapter_versions": sorted({str(a["adapter_version"]) for g in answers for a in g})}


def base_rates(cfg: EfficacyConfig) -> dict:
    """Every rule's rate on the base model's answers to the held-out prompts."""
    held_out, _ = split_prompts(cfg)
    data_dir = Path(cfg.work_dir) / "base-rates"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    started = time.monotonic()
    with running_app(data_dir=data_dir, model_path=model_path(cfg), extra=["--align-every", "0"]) as app:
        ready_s = time.monotonic() - started
        answers = sample_many(app, held_out, samples=cfg.samples, temperature=cfg.temperature,
                              concurrency=cfg.concurrency)
    sampling_s = time.monotonic() - started - ready_s
    rules = {}
    for rule in RULES.values():
        summary = rate_summary([[rule.check(a["text"]) for a in g] for g in answers], seed=cfg.seed)
        rules[rule.name] = {"kind": rule.kind, "wants": rule.wants, **summary,
                            "in_band": BASE_RATE_BAND[0] <= summary["rate"] <= BASE_RATE_BAND[1]}
    flat = [a for g in answers for a in g]
    return {"prompts": len(held_out), "samples": cfg.samples, "temperature": cfg.temperature,
            "max_tokens": "app default", "band": BASE_RATE_BAND, "rules": rules,
            "degenerate_rate": sum(is_degenerate(a["text"]) for a in flat) / len(flat),
            "cut_off_rate": sum(a["finish_reason"] == "length" for a in flat) / len(flat),
            "mean_words": sum(len(a["text"].split()) for a in flat) / len(flat),
            "times_s": {"app_ready": round(ready_s, 1), "sampling": round(sampling_s, 1)},
            "examples": [{"prompt": held_out[i], "answer": answers[i][0]["text"]} for i in range(3)]}


# ---------------------------------------------------------------- phase 1: collect candidates

def collect(cfg: EfficacyConfig, train: list[str]) -> Path:
    """The collected data dir (answers.json beside its data/); made once per (prompts, n, temperature)."""
    where = Path(cfg.work_dir) / f"collected-{cfg.train_prompts}x{cfg.n}-t{cfg.train_temperature:g}"
    if (where / "answers.json").exists():
        print(f"Reusing the candidates collected in {where}.", flush=True)
        return where
    shutil.rmtree(where, ignore_errors=True)
    (where / "data").mkdir(parents=True)
    started = time.monotonic()
    with running_app(data_dir=where / "data", model_path=model_path(cfg), extra=["--align-every", "0"]) as app:
        ready_s = time.monotonic() - started
        answers = sample_many(app, train, samples=cfg.n, temperature=cfg.train_temperature,
                              concurrency=cfg.concurrency)
    print(f"Collected {cfg.n} candidates for {len(train)} prompts in {time.monotonic() - started:.0f} s.", flush=True)
    users = list(USERS)
    record = {"prompts": [{"prompt": p, "user": users[i % 2], "answers": answers[i]} for i, p in enumerate(train)],
              "times_s": {"app_ready": round(ready_s, 1), "sampling": round(time.monotonic() - started - ready_s, 1)},
              "machine": machine_info("vllm")}
    write_results(record, where / "answers.json")
    return where


# ---------------------------------------------------------------- phase 2: the users' feedback

def feedback_events(rule: Rule, collected: dict, mix: str) -> list[tuple[str, str, dict]]:
    """(user, path, body) for everything this mix's users send, in order."""
    kinds = set(mix.split("+"))
    events = []
    for item in collected["prompts"]:
        user, answers = item["user"], item["answers"]
        good = [a for a in answers if rule.check(a["text"])]
        bad = [a for a in answers if not rule.check(a["text"])]
        if "rankings" in kinds and good and bad:
            events.append((user, "/api/rankings", {"response_ids": [a["response_id"] for a in good + bad]}))
        if "thumbs" in kinds:
            events += [(user, "/api/feedback", {"response_id": a["response_id"], "rating": 1}) for a in good]
            events += [(user, "/api/feedback", {"response_id": a["response_id"], "rating": -1, "reason": rule.reason})
                       for a in bad]
        if "rewrites" in kinds and bad:
            rewrite = rewritten(rule, bad[0]["text"], good)
            if rewrite:
                events.append((user, "/api/demonstrations", {"response_id": bad[0]["response_id"], "content": rewrite}))
    return events


def rewritten(rule: Rule, text: str, good: list[dict]) -> str | None:
    """What a user types instead of an answer that breaks the rule: the rule's own rewrite when it has
    one, else a sibling candidate that satisfies the rule; None when neither satisfies it."""
    if rule.rewrite:
        candidate = rule.rewrite(text)
        if rule.check(candidate):
            return candidate
    return good[0]["text"] if good else None


def send_feedback(app: App, events: list[tuple[str, str, dict]]) -> dict[str, int]:
    clients = {u: app.client(u) for u in USERS}
    try:
        for user, path, body in events:
            post(clients[user], path, body)
    finally:
        for c in clients.values():
            c.close()
    return {path: sum(e[1] == path for e in events) for path in ("/api/rankings", "/api/feedback",
                                                                 "/api/demonstrations")}


# ---------------------------------------------------------------- phase 3: the round, the gate, the rule

def round_flags(cfg: EfficacyConfig, events: int) -> list[str]:
    flags = ["--align-every", "1s", "--align-min-feedback", str(events)]
    align_args = " ".join(a for a in ((f"--policy {cfg.policy}" if cfg.policy else ""), cfg.align_args) if a)
    return flags + ([f"--align-args={align_args}"] if align_args else [])


def variant_suffix(cfg: EfficacyConfig) -> str:
    """'-ppo', '-rollouts-160', '-rloo-x': what tells this run's work dir and results file apart."""
    return "".join(f"-{part}" for part in (cfg.policy, cfg.label) if part)


def measure(app: App, admin, rule: Rule, held_out: list[str], cfg: EfficacyConfig, version: int | None,
            promoted: bool) -> dict:
    """The rule on held-out prompts: the candidate (served by the gate or activated by the admin), then base."""
    out: dict = {}
    if version is not None and (promoted or cfg.measure_rejected):
        if not promoted:
            out["candidate_activation"] = activate(admin, version)
        if promoted or out["candidate_activation"]["status"] == 200:
            answers = sample_many(app, held_out, samples=cfg.samples, temperature=cfg.temperature,
                                  concurrency=cfg.concurrency)
            out["candidate"] = {**answer_summary(rule, answers, seed=cfg.seed), "served_by_gate": promoted,
                                "answers": answers}
    out["base_activation"] = activate(admin, "base")
    answers = sample_many(app, held_out, samples=cfg.samples, temperature=cfg.temperature, concurrency=cfg.concurrency)
    out["base"] = {**answer_summary(rule, answers, seed=cfg.seed), "answers": answers}
    return out


def rm_rule_accuracy(rm_dir: Path, rule: Rule, held_out: list[str], *answer_sets: list[list[dict]]) -> dict:
    """The round's reward model on pairs whose answers differ in the rule: per held-out prompt (never
    trained on), every answer measured there that satisfies the rule against every one that does not;
    accuracy = the share where the satisfying one scores higher (issue 15's >= 85 % target)."""
    from align.reward import RewardScorer

    scorer = RewardScorer.load(rm_dir)
    prompts, texts, spans = [], [], []
    for i, prompt in enumerate(held_out):
        answers = list(dict.fromkeys(a["text"] for s in answer_sets for a in s[i]))  # distinct, in order
        spans.append((len(texts), answers))
        prompts += [[{"role": "user", "content": prompt}]] * len(answers)
        texts += answers
    scores = scorer.score(prompts, texts)
    right = pairs = prompts_with_pairs = 0
    for start, answers in spans:
        follows = [rule.check(a) for a in answers]
        good = [scores[start + j] for j, ok in enumerate(follows) if ok]
        bad = [scores[start + j] for j, ok in enumerate(follows) if not ok]
        right += sum(g > b for g in good for b in bad)
        pairs += len(good) * len(bad)
        prompts_with_pairs += bool(good and bad)
    return {"accuracy": right / pairs if pairs else None, "pairs": pairs, "prompts_with_pairs": prompts_with_pairs}


def round_record(round_row: dict, adapter: dict | None) -> dict:
    """What the round and the gate said, from /api/align/rounds and /api/adapters."""
    started = datetime.datetime.fromisoformat(round_row["started_at"])
    finished = datetime.datetime.fromisoformat(round_row["finished_at"]) if round_row["finished_at"] else None
    rec = {"id": round_row["id"], "status": round_row["status"], "trigger": round_row["trigger"],
           "error": round_row["error"], "progress": round_row["progress"],
           "round_s": (finished - started).total_seconds() if finished else None}
    if adapter:
        m = adapter["metrics"]
        rec.update({"adapter_version": adapter["version"], "decision": adapter["decision"],
                    "rm_accuracy": m.get("rm_accuracy"), "kl_to_base": m.get("candidate", {}).get("kl_to_base"),
                    "reward_gain": m.get("reward_gain"), "stage_times_s": m.get("timings_s"),
                    "gate_evaluation": {k: m.get(k) for k in ("candidate", "reference")}})
    return rec


def run_mix(cfg: EfficacyConfig, rule: Rule, mix: str, collected_dir: Path, held_out: list[str]) -> dict:
    collected = json.loads((collected_dir / "answers.json").read_text())
    events = feedback_events(rule, collected, mix)
    variant = Path(cfg.work_dir) / f"{rule.name}-{mix}{variant_suffix(cfg)}"
    shutil.rmtree(variant, ignore_errors=True)
    shutil.copytree(collected_dir / "data", variant / "data")
    times: dict[str, float] = {}
    t0 = time.monotonic()
    report: dict = {"rule": rule.name, "kind": rule.kind, "wants": rule.wants, "mix": mix, "policy": cfg.policy or None,
                    "label": cfg.label or None, "align_args": cfg.align_args or None,
                    "config": asdict(cfg), "machine_before": machine_info("vllm"), "held_out_prompts": held_out}
    with running_app(data_dir=variant / "data", model_path=model_path(cfg), extra=round_flags(cfg, len(events))) as app:
        times["app_ready"] = time.monotonic() - t0
        report["feedback"] = send_feedback(app, events)
        times["feedback"] = time.monotonic() - t0 - sum(times.values())
        print(f"{mix}: sent {report['feedback']} in {times['feedback']:.0f} s; waiting for the round.", flush=True)
        with app.client("alice") as admin:
            row = finished_round(admin, app, timeout_s=cfg.round_timeout_min * 60)
            times["round_wait"] = time.monotonic() - t0 - sum(times.values())
            version = row["adapter_version"]
            adapter, active = gate_outcome(admin, app, version) if version else (None, None)
            report["machine_after_round"] = machine_info("vllm")
            report["round"] = round_record(row, adapter)
            print(f"{mix}: round {row['status']} after {times['round_wait']:.0f} s: {report['round']}", flush=True)
            promoted = bool(version) and active == version
            report["measurement"] = measure(app, admin, rule, held_out, cfg, version, promoted)
            times["measure"] = time.monotonic() - t0 - sum(times.values())
    if version:
        m = report["measurement"]
        sets = [m[k]["answers"] for k in ("base", "candidate") if k in m]
        report["round"]["rm_rule_accuracy"] = rm_rule_accuracy(variant / "data" / "adapters" / str(version) /
                                                               "reward_model", rule, held_out, *sets)
        times["rm_rule_accuracy"] = time.monotonic() - t0 - sum(times.values())
    report["phase_times_s"] = {k: round(v, 1) for k, v in times.items()}
    report["result"] = result_line(report)
    return report


def result_line(report: dict) -> dict:
    """The figures a table shows: base rate, rate after, the paired difference, degenerate rates."""
    m = report["measurement"]
    base, cand = m["base"], m.get("candidate")
    out = {"base_rate": base["rule"]["rate"], "base_ci95": base["rule"]["ci95"],
           "degenerate_before": base["degenerate_rate"]}
    if cand:
        hits = lambda s: [[RULES[report["rule"]].check(a["text"]) for a in g] for g in s["answers"]]  # noqa: E731
        out.update({"after_rate": cand["rule"]["rate"], "after_ci95": cand["rule"]["ci95"],
                    "after_served_by_gate": cand["served_by_gate"], "degenerate_after": cand["degenerate_rate"],
                    "difference": paired_difference(hits(cand), hits(base), seed=report["config"]["seed"]),
                    "samples_after": [{"prompt": p, "answer": g[0]["text"]}
                                      for p, g in zip(report["held_out_prompts"], cand["answers"][:4])]})
    return out


# ---------------------------------------------------------------- tables

def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f} %"


def base_rate_table(report: dict) -> str:
    rows = [[f"`{name}`", r["kind"], r["wants"], pct(r["rate"]), f"{pct(r['ci95'][0])} – {pct(r['ci95'][1])}",
             "yes" if r["in_band"] else "no"] for name, r in report["rules"].items()]
    return markdown_table(["rule", "kind", "wants", "base rate", "95 % (bootstrap over prompts)", "in 15–70 %"], rows)


RESULT_HEADER = ["rule", "mix", "policy", "base rate", "after", "difference (95 %, paired)", "RM acc",
                 "RM acc, rule pairs", "KL", "gate",
                 "stage times (s)", "round", "degenerate before → after"]


def result_row(r: dict) -> list[str]:
    """One table row: a rule and mix's before/after, the round's figures and the gate's decision."""
    res, rnd = r["result"], r["round"]
    head = [f"`{r['rule']}`", r["mix"], r.get("label") or r["policy"] or "default", pct(res["base_rate"])]
    if rnd["status"] != "succeeded":
        return head + [f"round {rnd['status']}: {rnd.get('error')}"] + [""] * 8
    diff = res.get("difference")
    diff_text = (f"{100 * diff['difference']:+.1f} pts ({100 * diff['ci95'][0]:+.1f}, {100 * diff['ci95'][1]:+.1f})"
                 if diff else "–")
    decision = rnd.get("decision") or {}
    gate = "promoted" if decision.get("promote") else "rejected" if decision else "no decision"
    after = pct(res.get("after_rate")) + ("" if res.get("after_served_by_gate", True) else " (forced)")
    kl = rnd.get("kl_to_base")
    stages = ", ".join(f"{k} {v:.0f}" for k, v in (rnd.get("stage_times_s") or {}).items()) or "–"
    rule_pairs = rnd.get("rm_rule_accuracy") or {}
    rule_acc = f"{pct(rule_pairs['accuracy'])} of {rule_pairs['pairs']}" if rule_pairs.get("accuracy") is not None else "–"
    return head + [after, diff_text, pct(rnd.get("rm_accuracy")), rule_acc, "–" if kl is None else f"{kl:.2f}", gate,
                   stages,
                   f"{rnd['round_s'] / 60:.1f} min",
                   f"{pct(res['degenerate_before'])} → {pct(res.get('degenerate_after'))}"]


def results_table(reports: list[dict]) -> str:
    return markdown_table(RESULT_HEADER, map(result_row, reports))


def print_tables(out_dir: Path) -> None:
    base = out_dir / "efficacy-base-rates.json"
    if base.exists():
        print(base_rate_table(json.loads(base.read_text())) + "\n")
    reports = [json.loads(p.read_text()) for p in sorted(out_dir.glob("efficacy-*.json")) if p != base]
    if reports:
        print(results_table(reports))


def main(argv: list[str] | None = None) -> None:
    cfg = parse_config(argv)
    out_dir = Path(cfg.out_dir)
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True, mode=0o700)  # the data dirs hold users' chats
    if cfg.table:
        print_tables(out_dir)
        return
    if cfg.base_rates:
        before = machine_info("vllm")
        report = {**base_rates(cfg), "machine_before": before, "machine": machine_info("vllm")}
        print(f"Wrote {write_results(report, out_dir / 'efficacy-base-rates.json')}", flush=True)
        print(base_rate_table(report))
        return
    held_out, train = split_prompts(cfg)
    started = time.monotonic()
    collected = collect(cfg, train)
    collect_s = time.monotonic() - started
    for rule in cfg.rule:
        for mix in cfg.mix:
            report = run_mix(cfg, RULES[rule], mix, collected, held_out)
            report["phase_times_s"] = {"collect": round(collect_s, 1), **report["phase_times_s"]}
            path = out_dir / f"efficacy-{rule}-{mix}{variant_suffix(cfg)}.json"
            print(f"Wrote {write_results(report, path)}", flush=True)
            print(results_table([report]), flush=True)


if __name__ == "__main__":
    main()
