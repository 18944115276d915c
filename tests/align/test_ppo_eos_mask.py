import torch

from align.rollout import response_mask_until_eos

EOS = 1


def test_mask_covers_tokens_up_to_and_including_the_first_eos():
    responses = torch.tensor(
        [
            [5, 6, EOS, 7, EOS],  # stops at the third token; what follows is padding
            [EOS, 5, 6, 7, 8],  # an empty answer still has its EOS
            [5, 6, 7, 8, 9],  # never stopped within the limit
        ]
    )
    mask, ended = response_mask_until_eos(responses, EOS)
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert ended.tolist() == [True, True, False]
