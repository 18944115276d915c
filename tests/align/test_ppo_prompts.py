from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from align.rollout import encode_prompts

WORDS = ["<pad>", "<eos>", "<user>", "<assistant>", "hello", "there"]


def word_tokenizer():
    """A six-word tokenizer with a chat template: enough to see encode_prompts call apply_chat_template."""
    words = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<pad>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", eos_token="<eos>")
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return tokenizer


def test_chat_messages_go_through_the_template_and_ids_pass_through():
    prompts = [[{"role": "user", "content": "hello there"}], [4, 5, 4]]
    assert encode_prompts(prompts, word_tokenizer()) == [[2, 4, 5, 3], [4, 5, 4]]
