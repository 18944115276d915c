"""PPO benchmark: our `align.ppo.PPOTrainer` against TRL 1.12.0's `trl.experimental.ppo.PPOTrainer`.

    .venv/bin/python bench/ppo_vs_trl.py            # 64 episodes per side, ~8-10 minutes on 2 idle cores
    .venv/bin/python bench/ppo_vs_trl.py --quick    # smoke run: 16 episodes per side
    .venv/bin/python bench/ppo_vs_trl.py --repeats 3

TRL 1.12.0 is the last TRL release with PPO; the venv has TRL 1.16, which has none. The benchmark installs
1.12.0 on first use, outside the venv and without its dependencies (it runs on the venv's torch,
transformers 5, peft, accelerate and datasets, which it imports unchanged):

    .venv/bin/pip install --no-deps --target /tmp/trl112 trl==1.12.0

Each run is a fresh subprocess: the TRL side with PYTHONPATH=/tmp/trl112, so its `trl` shadows the venv's
only there; our side with the normal path. Both get the same work, spelled out in `trl_args` and
`our_ppo_config`: SmolLM2-135M-Instruct in float32, LoRA r16/alpha 32 on q/k/v/o, the same prompt batches
in the same order, batch 8, 2 PPO epochs x 2 minibatches of 4, sampling at temperature 1.0 without top-k or
top-p, answers of at most 48 tokens that stop at EOS (TRL: stop_token="eos"), a fixed KL coefficient, the
same missing-EOS penalty and the same learning rate (constant on both sides). Both are scored by one reward
model: SmolLM2 as a sequence classifier whose score head is drawn from a fixed seed, read at the last real
token of prompt + answer, which is exactly what TRL's `get_reward` does.

Design differences that stay, because they are what is being compared:
- critic: TRL trains a separate value model (a second full 135M network, all weights trainable, initialised
  like the reward model, as TRL's examples do); ours puts a linear value head on the policy's hidden states.
- log-probs at rollout time: both take them from the sampling pass (TRL from `generate`'s scores, ours
  from its own sampling loop, which also keeps the hidden states its value head reads); TRL then runs
  its value model over the batch.
- ours runs the frozen base weights on the CPU packed once for oneDNN (`PPOConfig.packed_weights`,
  align/packed.py); TRL's model is used as transformers builds it.
- gradient clipping: ours clips to norm 1.0; TRL 1.12's PPO loop never clips.

Only the training loop is timed (`train()` on both sides: wall time and the process's CPU time); loading
the models and building the trainers are not. The runs alternate (ours, TRL, TRL, ours, ...) so that other
jobs on a shared machine hit both sides alike; medians over repeats and the ratios ours/TRL are reported as
a Markdown table and as JSON.
Both processes run with OMP_WAIT_POLICY=PASSIVE by default (see `omp_wait_policy`): on a shared machine,
OpenMP threads that spin while waiting made every step several times slower, on both sides.

This file is the entry point: the command line, the parent that runs the sides, the report.
bench/ppo_vs_trl_spec.py holds `BenchConfig` and the prompts spec both processes read;
bench/ppo_vs_trl_sides.py what runs in a side's subprocess (`our_ppo_config`, `trl_args`, `run_worker`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/ppo_vs_trl.py` puts only bench/ on the path
    sys.path.insert(0, str(ROOT))

from bench.common import machine_info, machine_line, markdown_table, uptime, write_results  # noqa: E402
from bench.ppo_vs_trl_sides import run_worker  # noqa: E402
from bench.ppo_vs_trl_spec import TRL_VERSION, BenchConfig, build_spec  # noqa: E402
from common.flags import add_dataclass_args, from_namespace  # noqa: E402

SIDES = ("ours", "trl")
REFERENCE_TRL_S = 147.0  # measured before on this machine: TRL 1.12, 64 episodes, these settings, 2 cores
TARGET_RATIO = 1.5  # episodes/s ours over TRL that we aim for


# The smoke run writes next to the full results rather than over them.
QUICK = {"total_episodes": 16, "out": str(ROOT / "bench" / "results" / "ppo_vs_trl_quick.json")}


def parse_args(argv: list[str] | None = None) -> tuple[BenchConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(description="Benchmark our PPO against TRL 1.12's PPO on the same workload.")
    add_dataclass_args(parser, BenchConfig)
    # Internal: the parent starts itself again with these to run one side in a clean process.
    worker = parser.add_argument_group("worker (internal)")
    worker.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    worker.add_argument("--spec", help=argparse.SUPPRESS)
    worker.add_argument("--result", help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    cfg = from_namespace(BenchConfig, ns)
    if cfg.quick:
        defaults = BenchConfig()
        cfg = dataclasses.replace(
            cfg, **{k: v for k, v in QUICK.items() if getattr(cfg, k) == getattr(defaults, k)}
        )
    _check_config(cfg, parser)
    return cfg, ns


def _check_config(cfg: BenchConfig, parser: argparse.ArgumentParser) -> None:
    if cfg.mini_batch_size <= 0 or cfg.batch_size % cfg.mini_batch_size:
        parser.error("--mini-batch-size must be positive and divide --batch-size.")
    if cfg.total_episodes % cfg.batch_size:
        parser.error("--total-episodes must be a multiple of --batch-size (TRL rounds up, ours rounds down).")
    if cfg.total_episodes > cfg.n_prompts:
        # Beyond one pass our trainer reshuffles with a generator the PPO updates also draw from, so the
        # TRL side could no longer be handed the same batches.
        parser.error("--total-episodes must not exceed --n-prompts (one pass, same batches on both sides).")
    if cfg.repeats < 1:
        parser.error("--repeats must be positive.")


# ---------------------------------------------------------------------------- parent: running the sides


def ensure_trl(trl_dir: str) -> None:
    """Install TRL 1.12.0 into `trl_dir` (without dependencies, outside the venv) unless it is there."""
    marker = Path(trl_dir) / f"trl-{TRL_VERSION}.dist-info"
    if marker.is_dir():
        return
    print(f"TRL {TRL_VERSION} not found in {trl_dir}; installing it there (only the TRL side imports it): "
          f"pip install --no-deps --target {trl_dir} trl=={TRL_VERSION}", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", trl_dir,
                    f"trl=={TRL_VERSION}"], check=True)


def side_env(side: str, cfg: BenchConfig) -> dict[str, str]:
    env = dict(os.environ)
    env["TOKENIZERS_PARALLELISM"] = "false"  # no extra tokenizer threads competing for the 2 cores
    env["OMP_NUM_THREADS"] = str(cfg.threads)
    if cfg.omp_wait_policy:
        env["OMP_WAIT_POLICY"] = cfg.omp_wait_policy
    env["TRL_EXPERIMENTAL_SILENCE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if side == "trl":
        # First on the path: TRL 1.12 shadows the venv's TRL 1.16 in this process only.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (cfg.trl_dir, env.get("PYTHONPATH")) if p)
    return env


def run_side(side: str, cfg: BenchConfig, spec_path: Path, work: Path, label: str) -> dict:
    """One side in a fresh subprocess; its log goes to a file and is shown if it fails."""
    result_path, log_path = work / f"{label}.json", work / f"{label}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, "--spec", str(spec_path),
           "--result", str(result_path)]
    load_before = os.getloadavg()[0]
    print(f"[{label}] running (load avg {load_before:.2f}) ...", file=sys.stderr, flush=True)
    with open(log_path, "wb") as log:
        proc = subprocess.run(cmd, cwd=ROOT, env=side_env(side, cfg), stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=cfg.run_timeout_s)
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
        raise RuntimeError(f"[{label}] exited with {proc.returncode}; log tail:\n{tail}")
    result = json.loads(result_path.read_text())
    result["load_avg_1m_before"] = load_before
    summarise_run(result, cfg)
    print(f"[{label}] {cfg.total_episodes} episodes in {result['wall_s']:.1f} s "
          f"({result['cpu_s']:.0f} CPU s) = "
          f"{result['episodes_per_s']:.3f} episodes/s; reward {result['steps'][0]['reward']:+.3f} -> "
          f"{result['steps'][-1]['reward']:+.3f}; same batches: {result['same_batches']}", file=sys.stderr,
          flush=True)
    return result


def summarise_run(result: dict, cfg: BenchConfig) -> None:
    """Throughput figures of one run, added to it."""
    steps = result["steps"]
    result["episodes_per_s"] = cfg.total_episodes / result["wall_s"]
    generate_s = sum(s["generate_s"] for s in steps)
    result["generate_s"] = generate_s
    result["answer_tokens_per_s"] = sum(s["answer_tokens"] for s in steps) / generate_s
    result["decoded_tokens_per_s"] = sum(s["decoded_tokens"] for s in steps) / generate_s
    if all("update_s" in s for s in steps):
        update_s = sum(s["update_s"] for s in steps)
        result["update_s"] = update_s
        # Sample passes: each episode goes forward and backward once per PPO epoch.
        result["update_samples_per_s"] = len(steps) * cfg.batch_size * cfg.ppo_epochs / update_s
        result["score_and_reference_s"] = result["wall_s"] - generate_s - update_s
    else:
        result["rest_s"] = result["wall_s"] - generate_s  # scoring, reference, value and update together


def run_alternating(cfg: BenchConfig, spec_path: Path, work: Path) -> dict[str, list[dict]]:
    """`repeats` runs per side, the order flipped each round (ours/TRL, TRL/ours, ...): a slow spell on the
    shared machine then lands on both sides rather than on one."""
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for r in range(cfg.repeats):
        order = SIDES if r % 2 == 0 else SIDES[::-1]
        for side in order:
            runs[side].append(run_side(side, cfg, spec_path, work, f"{side}-{r + 1}"))
    return runs


# ---------------------------------------------------------------------------- report


def median_side(runs: list[dict]) -> dict:
    """Medians over one side's runs, and its per-step curves (median over runs at each step)."""
    keys = ["wall_s", "cpu_s", "episodes_per_s", "generate_s", "answer_tokens_per_s", "decoded_tokens_per_s"]
    keys += [k for k in ("update_s", "update_samples_per_s", "score_and_reference_s", "rest_s") if k in runs[0]]
    out = {k: statistics.median(run[k] for run in runs) for k in keys}
    n_steps = len(runs[0]["steps"])
    for curve in ("reward", "kl", "answer_length", "eos_fraction", "step_s"):
        out[f"{curve}_per_step"] = [statistics.median(run["steps"][i][curve] for run in runs)
                                    for i in range(n_steps)]
    out["same_batches"] = all(run["same_batches"] for run in runs)
    return out


def compare_sides(medians: dict) -> dict:
    ours, trl = medians["ours"], medians["trl"]
    return {
        "episodes_per_s_ours_over_trl": ours["episodes_per_s"] / trl["episodes_per_s"],
        # CPU seconds of the whole training loop, TRL over ours: other jobs stretch wall time far more than
        # the CPU time a side needs (idle OpenMP threads sleep, see omp_wait_policy), so this ratio is the
        # steadier one on a shared machine.
        "cpu_trl_over_ours": trl["cpu_s"] / ours["cpu_s"],
        "decoded_tokens_per_s_ours_over_trl": ours["decoded_tokens_per_s"] / trl["decoded_tokens_per_s"],
        "target_ratio": TARGET_RATIO,
        "trl_reference_wall_s": REFERENCE_TRL_S,
    }


def curve_summary(values: list[float]) -> str:
    """First -> last step, and the mean of each half, so a trend shows even with few steps."""
    half = max(1, len(values) // 2)
    return (f"{values[0]:+.3f} -> {values[-1]:+.3f} (mean first half {statistics.mean(values[:half]):+.3f}, "
            f"second half {statistics.mean(values[half:] or values):+.3f})")


def step_table(medians: dict) -> str:
    """Per-step reward, KL and step time of both sides; the prompt batch at each step is the same."""
    ours, trl = medians["ours"], medians["trl"]
    rows = [[i + 1, f"{ours['reward_per_step'][i]:+.3f}", f"{trl['reward_per_step'][i]:+.3f}",
             f"{ours['kl_per_step'][i]:.3f}", f"{trl['kl_per_step'][i]:.3f}", f"{ours['answer_length_per_step'][i]:.1f}",
             f"{trl['answer_length_per_step'][i]:.1f}", f"{ours['step_s_per_step'][i]:.1f}",
             f"{trl['step_s_per_step'][i]:.1f}"] for i in range(len(ours["reward_per_step"]))]
    return markdown_table(["step", "reward ours", "reward TRL", "KL ours", "KL TRL", "answer len ours",
                           "answer len TRL", "step s ours", "step s TRL"], rows, align="r" * 9)


def side_table(medians: dict) -> str:
    """Each side's medians: time, throughput, and reward, KL and answer length over the run."""
    rows = []
    for side in SIDES:
        s = medians[side]
        rows.append([side, f"{s['wall_s']:.1f}", f"{s['cpu_s']:.1f}", f"{s['episodes_per_s']:.3f}",
                     f"{s['generate_s']:.1f}", f"{s['decoded_tokens_per_s']:.1f} / {s['answer_tokens_per_s']:.1f}",
                     f"{s['update_s']:.1f}" if "update_s" in s else "n/a",
                     f"{s['update_samples_per_s']:.2f}" if "update_samples_per_s" in s else "n/a",
                     f"{s['reward_per_step'][0]:+.3f} -> {s['reward_per_step'][-1]:+.3f}",
                     f"{s['kl_per_step'][0]:.3f} -> {s['kl_per_step'][-1]:.3f}",
                     f"{statistics.mean(s['answer_length_per_step']):.1f}"])
    return markdown_table(["side", "train wall (s)", "train CPU (s)", "episodes/s", "generate (s)",
                           "generate tok/s (decoded / answer)", "update (s)", "update samples/s",
                           "reward first -> last step", "KL first -> last step", "mean answer length"],
                          rows, align="l" + "r" * 10)


def report_markdown(report: dict) -> str:
    m, cfg, med, ratio = report["machine"], report["config"], report["medians"], report["ratios"]
    lines = [
        f"Machine: {machine_line(m)}; no GPU; torch {m['torch']}, "
        f"transformers {m['transformers']}, peft {m['peft']}; TRL side: trl {m['trl_side']}.",
        f"Load before: `{report['uptime_before']}`; after: `{report['uptime_after']}`.",
        f"Workload (both sides): SmolLM2-135M-Instruct float32, LoRA r{cfg['lora_r']}/alpha {cfg['lora_alpha']} "
        f"on {'/'.join(m_.split('_')[0] for m_ in cfg['lora_target_modules'])}, {cfg['total_episodes']} episodes "
        f"= {cfg['total_episodes'] // cfg['batch_size']} steps of {cfg['batch_size']}, {cfg['ppo_epochs']} PPO "
        f"epochs x {cfg['batch_size'] // cfg['mini_batch_size']} minibatches of {cfg['mini_batch_size']}, "
        f"answers <= {cfg['max_new_tokens']} tokens stopping at EOS, temperature {cfg['temperature']}, lr "
        f"{cfg['learning_rate']:g} constant, KL coef {cfg['kl_coef']} fixed, {cfg['threads']} torch threads "
        f"(OMP_WAIT_POLICY={cfg['omp_wait_policy'] or 'unset'}); "
        f"same prompt batches per step: {med['ours']['same_batches'] and med['trl']['same_batches']}. "
        f"Medians of {cfg['repeats']} run(s) per side, alternating; only `train()` is timed.",
        "",
        side_table(med),
        "",
        f"**ours / TRL: {ratio['episodes_per_s_ours_over_trl']:.2f}x episodes/s** (target >= {TARGET_RATIO}x); "
        f"CPU time of the loop TRL / ours: {ratio['cpu_trl_over_ours']:.2f}x; "
        f"generate decoded tok/s ours / TRL: {ratio['decoded_tokens_per_s_ours_over_trl']:.2f}x. "
        f"TRL reference on this machine: {REFERENCE_TRL_S:.0f} s for 64 episodes.",
        "",
        "Reward (mean RM score per step, before the missing-EOS penalty): "
        f"ours {curve_summary(med['ours']['reward_per_step'])}; TRL {curve_summary(med['trl']['reward_per_step'])}.",
        f"KL (k1, nats per answer): ours {curve_summary(med['ours']['kl_per_step'])}; "
        f"TRL {curve_summary(med['trl']['kl_per_step'])}.",
        "",
        step_table(med),
        "",
        "Generate tok/s: decoded = batch x decode steps (what `generate` computed, filler after an early EOS "
        "included), answer = real answer tokens up to EOS. "
        "ours: update = `ppo_update` (2 epochs of forward+backward), the rest of a step is scoring, the policy's "
        "log-probs/values and the reference pass. TRL: its update is not separated; generate = `batch_generation`. "
        "Critic: TRL trains a separate full 135M value model; ours a linear value head on the policy.",
    ]
    return "\n".join(lines)


def run_benchmark(cfg: BenchConfig) -> dict:
    ensure_trl(cfg.trl_dir)
    spec = build_spec(cfg)
    report = {"machine": {**machine_info("torch", "transformers", "peft", "accelerate"), "trl_side": TRL_VERSION},
              "config": dataclasses.asdict(cfg), "uptime_before": uptime(),
              "prompts_truncated": spec["prompts_truncated"], "prompt_tokens_mean": spec["prompt_tokens_mean"]}
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        work = Path(tmp)
        spec_path = work / "spec.json"
        spec_path.write_text(json.dumps(spec))
        runs = run_alternating(cfg, spec_path, work)
    report["uptime_after"] = uptime()
    report["runs"] = runs
    report["medians"] = {side: median_side(runs[side]) for side in SIDES}
    report["ratios"] = compare_sides(report["medians"])
    return report


def main(argv: list[str] | None = None) -> None:
    cfg, ns = parse_args(argv)
    if ns.worker:
        run_worker(ns.worker, ns.spec, ns.result)
        return
    report = run_benchmark(cfg)
    table = report_markdown(report)
    report["markdown"] = table
    write_results(report, cfg.out, indent=2)
    print(table)
    print(f"\nJSON: {cfg.out}", file=sys.stderr)


if __name__ == "__main__":  # each side re-runs this file as a subprocess; imports alone must not run anything
    main()
