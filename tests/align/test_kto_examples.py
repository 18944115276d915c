"""KTO's labelled answers: the unpaired thumbs as they are, and (with_pairs) each answer of the pairs
labelled by its wins minus its losses; a ranking's middle answer, as often chosen as rejected, is left out."""

from align.direct import kto_examples

PROMPT = [{"role": "user", "content": "Name a colour."}]


def turn(text):
    return [{"role": "assistant", "content": text}]


RANKING = [{"prompt": PROMPT, "chosen": turn(a), "rejected": turn(b)} for a, b in
           (("Blue.", "Green."), ("Blue.", "No."), ("Green.", "No."))]  # Blue > Green > No
THUMB = {"prompt": PROMPT, "completion": turn("Red."), "label": False}


def test_thumbs_and_the_pairs_answers_by_their_wins():
    assert kto_examples([THUMB], RANKING, with_pairs=True) == [
        THUMB,
        {"prompt": PROMPT, "completion": turn("Blue."), "label": True},
        {"prompt": PROMPT, "completion": turn("No."), "label": False},
    ]


def test_without_pairs_only_the_thumbs():
    assert kto_examples([THUMB], RANKING, with_pairs=False) == [THUMB]
