"""Answers the serving engine sampled get the same KL to the base model as the round's own sampling gives
them (align.served_eval.answer_kls against align.evaluate's in-process path), token for token: the
gate's KL limit reads one quantity whichever process sampled, with prompts and answers of different
lengths in one batch."""

import pytest
import torch
from peft import LoraConfig, get_peft_model

from align.evaluate import EvalSettings, evaluate_model
from align.ppo import PPOConfig
from align.ppo_losses import kl_estimate
from align.rollout import generate_rollouts, reference_logprobs
from align.served_eval import SampledAnswer, answer_kls
from tests.align.tiny import SPECIAL_TOKENS, tiny_llama

PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [15, 16, 17, 18]]


def policy():
    model = get_peft_model(tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero (no change); the candidate must differ from the base
            p.data.normal_(0, 0.5)
    return model.eval()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_kl_of_served_answers_equals_the_in_process_kl(temperature):
    model = policy()
    cfg = PPOConfig(max_new_tokens=12, temperature=temperature, top_p=1.0, batch_size=1, mini_batch_size=1)
    torch.manual_seed(0)
    rollout = generate_rollouts(model, SPECIAL_TOKENS, PROMPTS, cfg)
    first = rollout.query_ids.shape[1]
    ref = reference_logprobs(model, rollout.input_ids, rollout.attention_mask, first, temperature=temperature)
    # Answers of different lengths in one batch, as the engine's are (an answer's prefix is an answer too).
    lengths = [12, 3, 7, 1]
    mask = torch.tensor([[1.0] * n + [0.0] * (12 - n) for n in lengths])
    expected, _ = kl_estimate(rollout.logprobs, ref, mask)

    answers = [SampledAnswer(prompt_ids=q, answer_ids=a[:n], text="")
               for q, a, n in zip(rollout.queries(), rollout.responses(), lengths)]
    got = answer_kls(model, SPECIAL_TOKENS, answers, temperature=temperature)

    assert got == pytest.approx(expected.tolist(), abs=1e-4)
    assert any(abs(k) > 0.1 for k in got)  # the adapter moved the policy: not a comparison of zeros


class FakeEngine:
    """Stands in for align.served_eval.ServedSampler: answers the model's own rollouts, as the engine would."""

    def __init__(self, model):
        self.model, self.calls = model, []

    def sample(self, choice, prompts, *, n, max_tokens, temperature, seed):
        self.calls.append((choice, n, max_tokens))
        ids = [[int(t) for t in p[0]["content"].split()] for p in prompts for _ in range(n)]
        cfg = PPOConfig(max_new_tokens=max_tokens or 6, temperature=temperature, top_p=1.0, batch_size=1,
                        mini_batch_size=1)
        rollout = generate_rollouts(self.model, SPECIAL_TOKENS, ids, cfg)
        return [SampledAnswer(prompt_ids=q, answer_ids=a, text=" ".join(map(str, a)))
                for q, a in zip(rollout.queries(), rollout.responses())], max_tokens or 6


def test_served_evaluation_scores_the_engines_answers_and_records_their_length():
    from align.evaluate import Served

    model = policy()
    engine = FakeEngine(model)
    prompts = [[{"role": "user", "content": " ".join(map(str, p))}] for p in PROMPTS]
    settings = EvalSettings(max_new_tokens=3, temperature=1.0, batch_size=4, seed=0, samples=2,
                            answers_per_prompt=2, served_max_tokens=9)
    scored = []

    def score(asked, texts):
        scored.extend(texts)
        return [float(len(t.split())) for t in texts]

    metrics = evaluate_model(model, SPECIAL_TOKENS, score, prompts, settings, adapter="default",
                             served=Served(engine, {"candidate_dir": "/x"}))

    assert engine.calls == [({"candidate_dir": "/x"}, 2, 9)]
    assert metrics["max_new_tokens"] == 9 and metrics["n_answers"] == 8
    assert metrics["mean_length"] > 3  # longer than this process's own 3-token answers would be
    assert metrics["kl_to_base"] != 0 and len(scored) == 8
