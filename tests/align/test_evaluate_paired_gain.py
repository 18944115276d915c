"""align.evaluate.compare: candidate and reference answer the same prompts, several answers each, and
the gain is the mean of the per-prompt differences with a t-interval over prompts. A scripted scorer
gives every prompt a large reward of its own (which pairing removes), a spread between a prompt's
answers (which averaging per prompt removes) and a known candidate-minus-reference difference."""

from types import SimpleNamespace

import pytest
from peft import LoraConfig, get_peft_model

from align.evaluate import EvalSettings, compare, paired_gain
from tests.align.tiny import EOS_ID, PAD_ID

PROMPTS = [[10, 11], [12, 13, 14], [15], [16, 17]]  # token ids: no chat template needed
DIFFERENCE = {10: 0.5, 12: 1.5, 15: 1.0, 16: 1.0}  # candidate minus reference, per prompt (by its first token)
T_3 = 3.182446  # Student's t, 3 degrees of freedom, 97.5th percentile


def scripted_scorer():
    calls = []

    def score(prompts, answers):
        calls.append(len(answers))
        candidate = len(calls) == 1  # compare() scores the candidate first
        spread = [0.3 if i % 2 else -0.3 for i in range(len(answers))]  # two answers per prompt: mean 0
        return [10.0 * p[0] + (DIFFERENCE[p[0]] + s if candidate else 0.0) for p, s in zip(prompts, spread)]

    return score, calls


def test_the_gain_is_paired_per_prompt_with_a_t_interval(tiny_llama, one_torch_thread):
    model = get_peft_model(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    tokenizer = SimpleNamespace(pad_token_id=PAD_ID, eos_token_id=EOS_ID,
                                batch_decode=lambda ids, skip_special_tokens: [str(list(i)) for i in ids])
    settings = EvalSettings(max_new_tokens=4, temperature=1.0, batch_size=3, seed=0, samples=0, answers_per_prompt=2)
    score, calls = scripted_scorer()

    ev = compare(model, tokenizer, score, PROMPTS, settings, candidate_adapter="default", reference_path=None,
                 reference_version=None)

    assert calls == [8, 8]  # 4 prompts x 2 answers, for each model
    assert ev["candidate"]["prompt_rewards"] == pytest.approx([100.5, 121.5, 151.0, 161.0])
    assert ev["reference"]["prompt_rewards"] == pytest.approx([100.0, 120.0, 150.0, 160.0])
    half = T_3 * (0.5 / 3) ** 0.5 / 2  # sd of (0.5, 1.5, 1, 1) is sqrt(0.5 / 3); over sqrt(4) prompts
    assert ev["reward_gain"] == pytest.approx(1.0)
    assert ev["reward_gain_interval"] == pytest.approx([1.0 - half, 1.0 + half], abs=1e-5)
    assert (ev["interval_confidence"], ev["eval_prompts"], ev["answers_per_prompt"]) == (0.95, 4, 2)
    # Answers are +-0.3 around their prompt's mean: that spread, without the prompts' own 100-160.
    assert ev["candidate"]["reward_sd"] == pytest.approx((8 * 0.3 ** 2 / (8 - 4)) ** 0.5)
    assert ev["reference"]["reward_sd"] == pytest.approx(0.0)


def test_one_prompt_gives_no_interval():
    with pytest.raises(ValueError, match="at least 2 prompts"):
        paired_gain([1.0], [0.0], confidence=0.95)
