"""A conversation longer than the reward model's max_length keeps its answer from the first token and
loses the prompt's oldest tokens: an answer that starts with what users like must still show it."""

from align.reward import encode_answer, load_tokenizer

OLD_TURNS = [{"role": "user", "content": "first question " * 40}, {"role": "assistant", "content": "first answer"}]
LAST_TURN = [{"role": "user", "content": "Give me a list of fruit."}]
ANSWER = "Sure! " + "apple, pear, plum, " * 20


def test_the_answer_keeps_its_start_and_the_prompt_loses_its_oldest_turns(model_path):
    tokenizer = load_tokenizer(model_path)

    text = tokenizer.decode(encode_answer(tokenizer, OLD_TURNS + LAST_TURN, ANSWER, max_length=64))

    assert len(encode_answer(tokenizer, OLD_TURNS + LAST_TURN, ANSWER, max_length=64)) == 64
    assert "assistant\nSure! apple" in text
    assert "first question" not in text


def test_a_short_answer_leaves_the_rest_to_the_turns_just_before_it(model_path):
    tokenizer = load_tokenizer(model_path)

    text = tokenizer.decode(encode_answer(tokenizer, OLD_TURNS + LAST_TURN, "Sure.", max_length=64))

    assert text.endswith("Give me a list of fruit.<|im_end|>\n<|im_start|>assistant\nSure.<|im_end|>\n")
    assert text.startswith(" question")  # cut inside the oldest turn, from the left


def test_a_conversation_that_fits_is_whole(model_path):
    tokenizer = load_tokenizer(model_path)
    conversation = LAST_TURN + [{"role": "assistant", "content": "Sure."}]
    whole = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]

    assert encode_answer(tokenizer, LAST_TURN, "Sure.", max_length=512) == list(whole)
