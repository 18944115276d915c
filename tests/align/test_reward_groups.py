"""The reward model reads each answer once: pairs are gathered by prompt (a ranking of K answers is K
sequences and C(K, 2) pairs) and packed into batches of whole prompts."""

from __future__ import annotations

from itertools import combinations

import torch

from align.reward import GroupCollator, answer_groups, pack_groups


class Tokenizer:
    """Stands in for a chat tokenizer: one id per character of the prompt and answer."""

    def apply_chat_template(self, conversation, *, tokenize, return_dict, add_generation_prompt=False):
        text = "".join(m["content"] for m in conversation)
        return {"input_ids": [ord(c) for c in text]}


def pair(prompt: str, chosen: str, rejected: str) -> dict:
    return {"prompt": [{"role": "user", "content": prompt}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "group": prompt}


def ranking(prompt: str, answers: str) -> list[dict]:
    return [pair(prompt, better, worse) for better, worse in combinations(answers, 2)]


def test_a_ranking_of_four_is_four_answers_and_six_pairs_and_its_thumbs_add_pairs_only():
    rows = ranking("Q", "abcd") + [pair("Q", "a", "d"), pair("R", "x", "y")]
    groups = answer_groups(rows, Tokenizer(), max_length=64)
    assert [len(g.answers) for g in groups] == [4, 2]
    assert groups[0].answers == [[ord("Q"), ord(c)] for c in "abcd"]
    assert groups[0].pairs == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (0, 3)]
    assert groups[1].pairs == [(0, 1)]


def test_whole_prompts_are_packed_up_to_the_batch_size():
    rows = ranking("Q1", "abcd") + ranking("Q2", "efgh") + ranking("Q3", "ij")
    packed = pack_groups(answer_groups(rows, Tokenizer(), max_length=64), max_answers=6)
    # Equal lengths keep the prompts' order: Q1 alone (Q2's four would pass 6), then Q2 and Q3; never split
    assert [len(r["answer_ids"]) for r in packed] == [4, 6]
    assert packed[1]["pairs"] == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3], [4, 5]]


def test_the_collator_indexes_pairs_across_rows():
    batch = GroupCollator(pad_token_id=0)([{"answer_ids": [[5, 6], [7]], "pairs": [[0, 1]]},
                                            {"answer_ids": [[8]], "pairs": []},
                                            {"answer_ids": [[9, 9, 9], [4]], "pairs": [[1, 0]]}])
    assert batch["input_ids"].tolist() == [[5, 6, 0], [7, 0, 0], [8, 0, 0], [9, 9, 9], [4, 0, 0]]
    assert batch["attention_mask"].sum(dim=1).tolist() == [2, 1, 1, 3, 1]
    assert torch.equal(batch["pairs"], torch.tensor([[0, 1], [4, 3]]))
