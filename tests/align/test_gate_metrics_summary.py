"""align.round.gate_metrics keeps what the gate reads from a round's metrics: both models' numbers
(without their samples and per-prompt rewards), the paired gain with its interval and how many prompts
and answers it stands on, and the reward model's held-out accuracy with its pair count."""

from align.round import gate_metrics

JUDGED = {"mean_reward": 0.2, "kl_to_base": 0.1, "degenerate_fraction": 0.0, "n_prompts": 32, "n_answers": 128}
EVALUATION = {"candidate": {**JUDGED, "samples": [{"prompt": "Q", "answer": "A", "reward": 0.2}],
                            "prompt_rewards": [0.2] * 32},
              "reference": {**JUDGED, "mean_reward": 0.1, "prompt_rewards": [0.1] * 32},
              "reference_version": None, "reward_gain": 0.1, "reward_gain_interval": [0.05, 0.15],
              "interval_confidence": 0.95, "eval_prompts": 32, "answers_per_prompt": 4}
METRICS = {"evaluation": EVALUATION, "reward_model": {"held_out_accuracy": 0.7, "held_out_pairs": 40, "train_pairs": 9},
           "timings_s": {"ppo": 1.0}}


def test_the_summary_holds_the_interval_and_the_reward_models_accuracy():
    assert gate_metrics(METRICS) == {
        "candidate": JUDGED, "reference": {**JUDGED, "mean_reward": 0.1}, "reference_version": None,
        "reward_gain": 0.1, "reward_gain_interval": [0.05, 0.15], "interval_confidence": 0.95, "eval_prompts": 32,
        "answers_per_prompt": 4, "rm_accuracy": 0.7, "rm_held_out_pairs": 40, "timings_s": {"ppo": 1.0},
    }
