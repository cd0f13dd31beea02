"""Built-in demo tasks with a rule-based gold reward that stands in for human raters.

- ``sort``: the prompt is digits followed by '='; the right response is the same digits in ascending
  order. Gold reward: the share of positions that match the sorted digits (length mismatch counts
  against it), in [0, 1].
- ``reviews``: the prompt asks for a short review of an item; the gold reward is a sentiment-lexicon
  score of the response, (positive - negative) / (positive + negative) words, in [-1, 1] (0 without
  sentiment words).

Each task builds its own word-level tokenizer (saved and loaded like any other) and writes
imperfect demonstrations: the SFT policy learns the format but not the best behaviour, which is what
the reward model and PPO are for.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

DIGITS = [str(d) for d in range(10)]
POSITIVE = ["great", "wonderful", "delicious", "amazing", "excellent", "lovely", "fun", "friendly", "perfect", "superb"]
NEGATIVE = ["awful", "boring", "terrible", "bland", "rude", "broken", "dull", "dirty", "slow", "noisy"]
NEUTRAL = ["okay", "fine", "average", "long", "new", "small", "big", "usual", "busy", "quiet"]
ITEMS = ["movie", "pizza", "hotel", "phone", "book", "cafe", "game", "album", "bus", "park"]
REVIEW_WORDS = ["review", "of", "the", ":", "was", "and", "i", "found", "it", "really", "very", ",", "but", "a", "place", "thing"]
SENTIMENT = {**{w: 1 for w in POSITIVE}, **{w: -1 for w in NEGATIVE}}


def sort_gold_reward(prompt: str, response: str) -> float:
    """Share of positions where the response equals the prompt's digits sorted ascending."""
    target = sorted(t for t in prompt.split() if t in DIGITS)
    answer = response.split()
    if not target:
        return 0.0
    matches = sum(a == t for a, t in zip(answer, target))
    return matches / max(len(answer), len(target))


def review_gold_reward(prompt: str, response: str) -> float:
    """Sentiment-lexicon score of the response: (positive - negative) / (positive + negative) words."""
    values = [SENTIMENT[w] for w in response.split() if w in SENTIMENT]
    return sum(values) / len(values) if values else 0.0


@dataclass
class DemoTask:
    name: str
    description: str
    vocabulary: list[str]
    sample_prompt: Callable[[random.Random], str]
    demonstration: Callable[[str, random.Random], str]
    gold_reward: Callable[[str, str], float]
    model: dict = field(default_factory=dict)
    sft: dict = field(default_factory=dict)
    reward_model: dict = field(default_factory=dict)
    ppo: dict = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)

    def build_tokenizer(self):
        """A word-level tokenizer over the task's vocabulary, with distinct <pad>, <eos> and <unk>."""
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        words = ["<pad>", "<eos>", "<unk>"] + self.vocabulary
        backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


# ---------------------------------------------------------------- sort
def _sort_prompt(rng: random.Random, length: int = 5) -> str:
    return " ".join(rng.choice(DIGITS) for _ in range(length)) + " ="


def _sort_demonstration(prompt: str, rng: random.Random, error_rate: float = 0.8) -> str:
    """The sorted digits, but in most demonstrations one or two digits are wrong (a careless rater)."""
    answer = sorted(t for t in prompt.split() if t in DIGITS)
    if rng.random() < error_rate:
        for _ in range(rng.choice([1, 2])):
            answer[rng.randrange(len(answer))] = rng.choice(DIGITS)
    return " ".join(answer)


# ---------------------------------------------------------------- reviews
def _review_prompt(rng: random.Random) -> str:
    return f"review of the {rng.choice(ITEMS)} :"


def _review_demonstration(prompt: str, rng: random.Random) -> str:
    """Templated reviews with adjectives drawn from all three sentiment classes alike."""
    item = prompt.split()[3]
    adjective = lambda: rng.choice(POSITIVE + NEGATIVE + NEUTRAL)  # noqa: E731
    template = rng.randrange(4)
    if template == 0:
        return f"the {item} was {adjective()} and {adjective()}"
    if template == 1:
        return f"i found it really {adjective()}"
    if template == 2:
        return f"a {adjective()} {item} , but {adjective()}"
    return f"very {adjective()} place , {adjective()} and {adjective()}"


TASKS = {
    "sort": DemoTask(
        name="sort", description="sort 5 digits ascending; gold reward = share of correct positions",
        vocabulary=DIGITS + ["="], sample_prompt=_sort_prompt, demonstration=_sort_demonstration, gold_reward=sort_gold_reward,
        model={"hidden_size": 64, "num_layers": 2, "num_heads": 4, "max_positions": 16},
        sft={"epochs": 4, "batch_size": 64, "learning_rate": 3e-3},
        reward_model={"epochs": 4, "batch_size": 64, "learning_rate": 1e-3},
        ppo={"total_episodes": 6400, "batch_size": 128, "minibatch_size": 32, "n_epochs": 4, "learning_rate": 5e-4,
             "max_new_tokens": 7, "kl_coef": 0.3, "vf_coef": 0.5},
        sizes={"sft_rows": 4000, "preference_prompts": 3000, "ppo_prompts": 2000, "eval_prompts": 256},
    ),
    "reviews": DemoTask(
        name="reviews", description="short templated reviews; gold reward = sentiment-lexicon score",
        vocabulary=REVIEW_WORDS + ITEMS + POSITIVE + NEGATIVE + NEUTRAL, sample_prompt=_review_prompt,
        demonstration=_review_demonstration, gold_reward=review_gold_reward,
        model={"hidden_size": 64, "num_layers": 2, "num_heads": 4, "max_positions": 24},
        sft={"epochs": 4, "batch_size": 64, "learning_rate": 3e-3},
        reward_model={"epochs": 4, "batch_size": 64, "learning_rate": 1e-3},
        ppo={"total_episodes": 6400, "batch_size": 128, "minibatch_size": 32, "n_epochs": 4, "learning_rate": 5e-4,
             "max_new_tokens": 10, "kl_coef": 0.3, "vf_coef": 0.5},
        sizes={"sft_rows": 4000, "preference_prompts": 3000, "ppo_prompts": 2000, "eval_prompts": 256},
    ),
}


def get_task(name: str) -> DemoTask:
    from ppokit.errors import ConfigError

    if name not in TASKS:
        raise ConfigError(f"unknown demo task {name!r}; expected one of {sorted(TASKS)}")
    return TASKS[name]
