"""Where a round's evaluation time goes when the serving engine samples its answers (issue 15): the engine's
sampling of the reference's (base model's) and the candidate's answers, the candidate's KL passes in the
round's process, and the reward model's scoring; the answer tokens of each.

    python bench/eval_phases.py --run-dir /tmp/efficacy/<an efficacy run>/data [--version 1] \\
        [--out bench/results/eval_phases.json]

The run's candidate (adapters/<version>/, with its reward_model/) is evaluated as a round would evaluate it:
the app's engine configuration (EngineConfig defaults) started in this process and sampling through
serving.eval_sampling.EvalSampler, 32 held-out HH prompts x 4 answers at 256 tokens, then align.served_eval's
KL and the round's scorer, the frozen weights packed as in a round. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # bench/serving.py would shadow the serving package
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m align` sets it for a round

from bench.common import machine_info, write_results  # noqa: E402

PROMPTS, ANSWERS, MAX_TOKENS = 32, 4, 256  # a round's defaults and the app's default answer length


class EngineThread:
    """The engine and an EvalSampler in an event loop of their own, as in the app; `sample` blocks."""

    def __init__(self, model_path: str, adapters_dir: Path):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.ready, self.sampler, self._stop = threading.Event(), None, None
        self.task = asyncio.run_coroutine_threadsafe(self._main(model_path, adapters_dir), self.loop)
        if not self.ready.wait(600):
            raise TimeoutError("the engine did not start")

    async def _main(self, model_path: str, adapters_dir: Path) -> None:
        from serving.config import EngineConfig
        from serving.engine import Engine
        from serving.eval_sampling import EvalSampler

        self._stop = asyncio.Event()
        async with Engine.start(EngineConfig(), model_path=model_path, served_name="bench") as engine:
            self.sampler = EvalSampler(engine=engine, adapters=None, adapters_dir=adapters_dir,
                                       default_max_tokens=MAX_TOKENS, max_tokens_limit=MAX_TOKENS)
            self.ready.set()
            await self._stop.wait()

    def sample(self, model: dict, prompts: list) -> dict:
        from serving.eval_sampling import EvalSamplesBody

        body = EvalSamplesBody.model_validate({"model": model, "prompts": prompts, "n": ANSWERS, "seed": 0})
        return asyncio.run_coroutine_threadsafe(self.sampler.sample(body), self.loop).result(1800)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.task.result(120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run-dir", required=True, help="An efficacy run's data dir (holds adapters/<version>/).")
    ap.add_argument("--version", type=int, default=1, help="The candidate's adapter version in that run.")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "eval_phases.json"))
    args = ap.parse_args()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from align.packed import packed_frozen_linears
    from align.policy import packed_scorer
    from align.reward import RewardScorer
    from align.served_eval import SampledAnswer, answer_kls
    from bench.efficacy import hh_prompts
    from common.models import prepare_default_model

    base_path = str(prepare_default_model(REPO / "data"))
    adapters = Path(args.run_dir) / "adapters"
    candidate = adapters / ".tmp-eval-phases"  # where a round's candidate is while it is evaluated
    shutil.rmtree(candidate, ignore_errors=True)
    shutil.copytree(adapters / str(args.version), candidate)
    engine = EngineThread(base_path, adapters)
    try:
        torch.set_num_threads(os.cpu_count())
        prompts = [[{"role": "user", "content": p}] for p in hh_prompts()[:PROMPTS]]
        asked = [p for p in prompts for _ in range(ANSWERS)]
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32),
                                           str(candidate)).eval()
        scorer = RewardScorer.load(candidate / "reward_model", base_model_path=base_path, device=torch.device("cpu"))
        phases = {}
        with packed_scorer(scorer, enabled=True), packed_frozen_linears(policy, enabled=True):
            for side, model in (("reference", {"version": None}), ("candidate", {"candidate_dir": str(candidate)})):
                t = time.perf_counter()
                reply = engine.sample(model, prompts)
                sample_s = time.perf_counter() - t
                answers = [SampledAnswer(p["prompt_token_ids"], a["token_ids"], a["text"])
                           for p in reply["prompts"] for a in p["answers"]]
                t = time.perf_counter()
                if side == "candidate":  # the base model's own answers have KL 0: the round takes none
                    answer_kls(policy, tokenizer, answers, temperature=1.0)
                kl_s = time.perf_counter() - t
                t = time.perf_counter()
                scorer.score(asked, [a.text for a in answers])
                phases[side] = {"sample_s": round(sample_s, 1), "kl_s": round(kl_s, 1),
                                "score_s": round(time.perf_counter() - t, 1),
                                "answer_tokens": sum(len(a.answer_ids) for a in answers)}
                print(side, phases[side], flush=True)
    finally:
        engine.close()
        shutil.rmtree(candidate, ignore_errors=True)
    total = sum(v for side in phases.values() for k, v in side.items() if k.endswith("_s"))
    write_results({"machine": machine_info("vllm", "torch"), "run_dir": args.run_dir, "version": args.version,
                   "prompts": PROMPTS, "answers_per_prompt": ANSWERS, "max_tokens": MAX_TOKENS,
                   "phases": phases, "total_s": round(total, 1)}, args.out)


if __name__ == "__main__":
    main()
