"""Configuration of the alignment stages, one dataclass per stage. The command line (align/__main__.py)
turns every field into a flag with common.flags.add_dataclass_args, so each field carries its help."""

from __future__ import annotations

from dataclasses import dataclass, field

# Every linear layer of a Llama block: LoRA on attention and MLP together learns more per step than on
# attention alone, and a rank-16 adapter on all seven is still under 2% of a 135M model.
LLAMA_LINEAR_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class SFTConfig:
    """Supervised fine-tuning of a LoRA adapter on user-written demonstrations (prompt -> completion)."""

    learning_rate: float = field(
        default=2e-4,  # the usual LoRA SFT rate; full fine-tuning would use ~10x less
        metadata={"help": "AdamW learning rate for the LoRA weights."},
    )
    epochs: float = field(
        default=2.0,  # demonstrations are few; a second pass helps, more starts to memorise them
        metadata={"help": "Passes over the demonstrations."},
    )
    batch_size: int = field(
        default=4,  # small batches keep padding (and CPU time) low for answers of very different lengths
        metadata={"help": "Demonstrations per forward pass."},
    )
    gradient_accumulation: int = field(
        default=2,  # 4 x 2 = 8 demonstrations per optimizer step
        metadata={"help": "Forward passes summed into one optimizer step."},
    )
    max_length: int = field(
        default=512,  # prompt + completion in tokens: 9 in 10 chat turns fit (HH: p90 ~350); a batch costs its longest row
        metadata={"help": "Longest prompt + completion in tokens; longer ones lose their end."},
    )
    lora_r: int = field(
        default=16,  # stays below the engine's max_lora_rank (64) so vLLM can hot-swap the adapter
        metadata={"help": "LoRA rank of the adapter (must not exceed the engine's --max-lora-rank)."},
    )
    lora_alpha: int = field(
        default=32,  # alpha = 2r: the common scaling that keeps the update size independent of r
        metadata={"help": "LoRA alpha; the adapter's update is scaled by alpha / r."},
    )
    lora_dropout: float = field(
        default=0.05,  # a little regularisation, since demonstrations are few
        metadata={"help": "Dropout on the LoRA branch during training."},
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LLAMA_LINEAR_MODULES),  # attention + MLP, the modules vLLM's LoRA supports
        metadata={"help": "Names of the linear layers that get a LoRA adapter."},
    )
    seed: int = field(
        default=0,  # fixed so that two runs on the same data give the same adapter
        metadata={"help": "Seed for the LoRA initialisation and the data order."},
    )
    min_demonstrations: int = field(
        default=16,  # below this an adapter mostly memorises a handful of answers
        metadata={"help": "Fewest demonstrations to train on; fewer is refused and nothing is saved."},
    )
    num_threads: int = field(
        default=0,  # every core: SFT was 1.38x faster on 2 than on 1; `python -m align` makes idle threads sleep
        # (OMP_WAIT_POLICY=PASSIVE) rather than spin, which made 2 threads ~7x slower than 1 beside other jobs
        metadata={"help": "CPU threads torch may use while training (0: torch's default, one per core)."},
    )


REWARD_KINDS = ("pooled", "lora")
LENGTH_TERMS = (1, 2, 7)  # the pooled kind's length features: the log length; + its square; + six bumps over it


@dataclass
class RewardConfig:
    """Training of a reward model on preference pairs with the pairwise loss -log sigmoid(r_chosen -
    r_rejected): either a linear head on the frozen base model's pooled hidden states (kind "pooled",
    align.pooled_reward) or the base LM with a scalar head fine-tuned with LoRA by TRL's RewardTrainer
    (kind "lora", align.reward)."""

    kind: str = field(
        default="pooled",  # on the pairs of 300 prompts ranked by a visible rule: 84-85 % vs 64 % on held-out pairs
        # that differ in the rule, trained in ~2 minutes instead of ~9 (bench/rm_rule_pairs.py, BENCHMARKS.md)
        metadata={"help": "'pooled': a linear head on the frozen base model's hidden states, averaged and maxed "
                          "over the answer's tokens (trains in seconds after one read of each answer); 'lora': "
                          "the LM fine-tuned with LoRA as a sequence classifier by TRL's RewardTrainer. "
                          "--learning-rate, --epochs, --batch-size, --gradient-accumulation and --lora-* apply "
                          "to 'lora', --head-* to 'pooled'."},
    )
    head_steps: int = field(
        default=300,  # full-batch Adam steps: the loss on a round's ~1,600 pairs stops moving well before
        metadata={"help": "Optimizer steps of the pooled kind's head (each over every training pair)."},
    )
    head_learning_rate: float = field(
        default=1e-2,  # standardised features: every weight moves on the same scale
        metadata={"help": "Adam learning rate of the pooled kind's head."},
    )
    head_weight_decay: float = field(
        default=1.0,  # ~1,150 features for ~1,600 pairs: without it the head memorises the training pairs
        metadata={"help": "L2 penalty on the pooled kind's head weights, added to the mean pairwise loss."},
    )
    head_length_weight_decay: float = field(
        default=1.0,  # as the other weights; 0 fitted the length band's pairs better (BENCHMARKS.md, issue 15)
        metadata={"help": "L2 penalty on the weights of the pooled kind's length features (the last "
                          "--rm-length-terms): a few features every answer has, so 0 cannot memorise pairs."},
    )
    length_terms: int = field(
        default=2,  # on the log length alone the reward model could only learn "shorter" or "longer" (issue 15)
        metadata={"help": "How the pooled kind sees an answer's length: 1 = the log of its tokens (the score can "
                          "only rise or fall with length), 2 = also that log's squared distance from ~64 tokens "
                          "(the score can peak at a length, for users who want a length band), 7 = the log and "
                          "six bumps over it, one per doubling from 8 to 256 tokens (any shape over length)."},
    )

    learning_rate: float = field(
        default=3e-4,  # the upper half of the usual LoRA range (1e-4..5e-4): one epoch is only ~100 optimizer steps
        metadata={"help": "AdamW learning rate for the LoRA weights and the score head."},
    )
    epochs: float = field(
        default=1.0,  # one pass fits the 2-core CPU budget; reward models overfit quickly after the first
        metadata={"help": "Passes over the training pairs."},
    )
    batch_size: int = field(
        default=8,  # pairs per forward pass, i.e. 16 sequences (chosen and rejected)
        metadata={"help": "Preference pairs per forward pass."},
    )
    gradient_accumulation: int = field(
        default=2,  # 8 x 2 = 16 pairs per optimizer step
        metadata={"help": "Forward passes summed into one optimizer step."},
    )
    max_length: int = field(
        default=320,  # tokens: a whole 256-token served answer and 64 prompt tokens before it. The pooled kind reads
        # each answer once, forward only; the LoRA kind's training cost grows linearly with it (it was run at 128,
        # which cut served answers, median ~220 tokens, after their first ~96: issue 15)
        metadata={"help": "Tokens the reward model reads per conversation. The answer is kept from its start "
                          "(up to max_length minus a quarter for the prompt); the prompt fills the rest and is "
                          "cut from the left, keeping the turns just before the answer."},
    )
    num_layers: int = field(
        default=16,  # of SmolLM2's 30: the pooled head on blocks 8 and 16 was right on 84-85 % of rule pairs, as
        # often as on 8, 16, 24 and 30 together at half the reading cost (bench/rm_rule_pairs.py); the LoRA kind
        # reached 63.6 % with 12 blocks at 128 tokens (issue 15)
        metadata={"help": "Transformer blocks of the base model the reward model keeps, counted from the "
                          "bottom (0: all); the pooled kind reads the middle one and the last. Fewer is "
                          "proportionally faster to train and to score."},
    )
    lora_r: int = field(
        default=16,  # ~1.3M trainable weights over 7 modules x 8 blocks, ample for a few thousand pairs
        metadata={"help": "LoRA rank."},
    )
    lora_alpha: int = field(
        default=32,  # alpha = 2r: the common scaling that keeps the update size independent of r
        metadata={"help": "LoRA alpha; the adapter's update is scaled by alpha / r."},
    )
    lora_dropout: float = field(
        default=0.05,  # a little regularisation against memorising the few pairs a round brings
        metadata={"help": "Dropout on the LoRA branch during training."},
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: list(LLAMA_LINEAR_MODULES),  # attention + MLP of every kept block
        metadata={"help": "Names of the linear layers that get a LoRA adapter (the score head is always trained)."},
    )
    max_pairs: int = field(
        default=2048,  # every pair of ~300 four-answer rankings (6 pairs each) and their thumbs; the 512 cap kept
        # a quarter of them and the RM learned less (issue 15). An epoch costs time linear in the pairs: the cap
        # bounds a round whose feedback has piled up for weeks
        metadata={"help": "Most preference pairs the reward model sees, held-out ones included (0: all). The "
                          "pairs of the newest feedback are kept first, and the pairs of one ranking are kept "
                          "or dropped together."},
    )
    eval_fraction: float = field(
        default=0.1,  # ~180 of ~1,800 pairs (accuracy +-3.7 points); more would take pairs from training
        metadata={"help": "Share of pairs held out (whole rankings at a time) to measure accuracy on."},
    )
    seed: int = field(
        default=0,  # fixed so that two runs on the same data give the same split and the same model
        metadata={"help": "Seed for the held-out split, the head's initialisation and the data order."},
    )
    min_pairs: int = field(
        default=32,  # below this the held-out accuracy is noise and the model memorises the pairs
        metadata={"help": "Fewest preference pairs to train on; fewer is refused and nothing is saved."},
    )
    num_threads: int = field(
        default=0,  # every core: the RM stage took 125 s on 2, 176 s on 1; `python -m align` makes idle threads sleep
        # (OMP_WAIT_POLICY=PASSIVE) rather than spin, which made 2 threads ~7x slower than 1 beside other jobs
        metadata={"help": "CPU threads torch may use while training (0: torch's default, one per core)."},
    )

    def __post_init__(self) -> None:
        if self.kind not in REWARD_KINDS:
            raise ValueError(f"--rm-kind must be one of {', '.join(REWARD_KINDS)}, not {self.kind!r}.")
        if self.length_terms not in LENGTH_TERMS:
            raise ValueError(f"--rm-length-terms is {self.length_terms}; it must be 1, 2 or 7.")
        if self.head_length_weight_decay < 0:
            raise ValueError(f"--rm-head-length-weight-decay is {self.head_length_weight_decay}; it must be 0 or more.")
        if self.head_steps < 1:
            raise ValueError(f"--rm-head-steps is {self.head_steps}; the pooled head needs at least one step.")
