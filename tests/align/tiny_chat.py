"""The tiny random Llama of tests/align/tiny.py saved as a base model directory with a word-level tokenizer
over its 64 ids ("<pad>", "<eos>", "<unk>", "w3" ... "w63") and a chat template that writes each message's
words and ends an assistant turn with <eos>: what the policy stages load by path. A scripted reward
model scores answers by a toy rule on those words."""

from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import PreTrainedTokenizerFast

from align.ppo import PPOConfig
from align.rollout import encode_prompts, generate_rollouts
from tests.align.tiny import tiny_llama

WORDS = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(3, 64)]
TARGET = {f"w{i}" for i in range(16, 32)}  # the rule: answers made of these words, a quarter of the vocabulary
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['content'] + ' ' }}"
                 "{% if m['role'] == 'assistant' %}{{ '<eos> ' }}{% endif %}{% endfor %}")


def tiny_chat_tokenizer() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>", chat_template=CHAT_TEMPLATE)


def save_tiny_chat_model(directory: Path, seed: int = 0) -> Path:
    tiny_llama(seed).save_pretrained(directory)
    tiny_chat_tokenizer().save_pretrained(directory)
    return Path(directory)


def user_prompts(n: int, seed: int) -> list[list[dict]]:
    """n one-turn chats of 2-5 random words."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 6, (n,), generator=g).tolist()
    return [[{"role": "user", "content": " ".join(WORDS[i] for i in torch.randint(3, 64, (k,), generator=g).tolist())}]
            for k in lengths]


def target_share(answer: str) -> float:
    words = answer.split()
    return sum(w in TARGET for w in words) / len(words) if words else 0.0


class RuleScorer:
    """Stands in for the reward model: the share of an answer's words in TARGET."""

    def score(self, prompts, answers):
        return [target_share(a) for a in answers]


def sampled_reward(model, tokenizer, prompts, *, max_new_tokens: int = 8) -> float:
    """Mean rule score of 4 sampled answers per prompt, with the same sampling noise every call."""
    torch.manual_seed(123)
    cfg = PPOConfig(max_new_tokens=max_new_tokens, batch_size=1, mini_batch_size=1, total_episodes=1)
    rollout = generate_rollouts(model, tokenizer, encode_prompts(prompts, tokenizer) * 4, cfg)
    answers = tokenizer.batch_decode(rollout.responses(), skip_special_tokens=True)
    return sum(map(target_share, answers)) / len(answers)


def lora_b_all_trained(policy) -> bool:
    """Every LoRA B matrix moved from its zero start (a fresh adapter's B is 0)."""
    tensors = [p for n, p in policy.named_parameters() if "lora_B" in n]
    return bool(tensors) and all(t.abs().sum() > 0 for t in tensors)
