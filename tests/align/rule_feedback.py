"""Feedback a user with the toy rule of tests/align/tiny_chat.py would give: answers made of TARGET words
preferred (pairs) or thumbed up (unpaired thumbs), answers without them rejected or thumbed down."""

import torch

from tests.align.tiny_chat import TARGET, WORDS


def rule_answer(good: bool, g: torch.Generator) -> list[dict]:
    """An assistant turn of 3-7 words, all from TARGET (good) or none (not good)."""
    pool = [w for w in WORDS[3:] if (w in TARGET) == good]
    n = int(torch.randint(3, 8, (1,), generator=g))
    return [{"role": "assistant", "content": " ".join(pool[int(i)] for i in torch.randint(0, len(pool), (n,),
                                                                                          generator=g))}]


def rule_pairs(prompts: list[list[dict]], seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"prompt": p, "chosen": rule_answer(True, g), "rejected": rule_answer(False, g)} for p in prompts]


def rule_thumbs(prompts: list[list[dict]], seed: int) -> list[dict]:
    """Two unpaired thumbs per prompt, alternately up and down."""
    g = torch.Generator().manual_seed(seed)
    return [{"prompt": p, "completion": rule_answer(i % 2 == 0, g), "label": i % 2 == 0}
            for i, p in enumerate(prompts + prompts)]
