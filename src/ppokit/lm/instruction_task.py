"""A verifiable instruction-following task for a real chat model: each prompt asks about a topic and adds one format
instruction a program can check (one word; fewer than eight words; start with 'Sure'; end with '!'); the reward
is 1 when the response follows it, else 0.

Training and held-out prompts ask about different topics, so the held-out score measures the instruction being
followed on prompts the policy never trained on. ``instruction_reward`` is importable as a reward function:
``reward_function=[ppokit.lm.instruction_task:instruction_reward]``.
"""

from __future__ import annotations

import random
import re

TRAIN_TOPICS = [
    "the sun", "a cat", "the ocean", "winter", "coffee", "a bicycle", "the moon", "music", "a forest", "rain", "bread", "a city", "a river", "snow",
    "a garden", "the wind", "a library", "a train", "chocolate", "a mountain", "summer", "a dog", "the sky", "tea", "a bridge", "a candle",
    "an island", "a storm", "a violin", "the desert", "a school", "a clock", "honey", "a lighthouse", "the stars", "autumn", "a bakery", "a lake",
    "the morning", "a camera", "a map", "a bird", "a road", "soup", "a beach", "a tree", "a cloud", "a song",
]
HELD_OUT_TOPICS = [
    "a volcano", "a piano", "spring", "a castle", "the night", "a horse", "an apple", "a boat", "fire", "a painting", "the rainforest", "a kite",
    "a museum", "thunder", "a glacier", "a market", "a whale", "a garden party", "the harbor", "a festival",
]
QUESTIONS = ["Tell me about {topic}.", "What do you think of {topic}?", "Describe {topic}.", "What is special about {topic}?",
             "Say something about {topic}."]


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


# instruction -> check of the response
INSTRUCTIONS = {
    "Answer with a single word.": lambda response: len(_words(response)) == 1,
    "Answer in fewer than eight words.": lambda response: 0 < len(_words(response)) < 8,
    "Start your answer with the word 'Sure'.": lambda response: response.strip().startswith("Sure"),
    "End your answer with an exclamation mark.": lambda response: response.strip().endswith("!"),
}


def make_prompts(count: int, seed: int, held_out: bool = False) -> list[list[dict]]:
    """``count`` chat prompts (one user turn each): a question about a topic plus one instruction, drawn with ``seed``."""
    rng = random.Random(seed)
    topics = HELD_OUT_TOPICS if held_out else TRAIN_TOPICS
    instructions = sorted(INSTRUCTIONS)
    return [[{"role": "user", "content": f"{rng.choice(QUESTIONS).format(topic=rng.choice(topics))} {rng.choice(instructions)}"}]
            for _ in range(count)]


def instruction_reward(prompt, response: str) -> float:
    """1.0 when ``response`` follows the instruction that ends ``prompt`` (a chat message list or its text), else 0.0."""
    text = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
    for instruction, followed in INSTRUCTIONS.items():
        if text.rstrip().endswith(instruction):
            return float(followed(response))
    raise ValueError(f"the prompt ends with none of the task's instructions: {text!r}")
