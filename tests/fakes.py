"""A scripted fake engine for fast stage tests (no model): deterministic text from the seed, scripted scores."""

from __future__ import annotations

import math
import random

from srlm_lite.engines.base import Completion

TOPICS = ["volcanoes", "tax returns", "sourdough bread", "binary search", "the French revolution", "tide pools",
          "solar panels", "chess openings", "compound interest", "jet lag", "honeybees", "SQL joins", "glaciers",
          "public speaking", "prime numbers", "coffee roasting", "wind turbines", "the immune system"]
VERBS = ["Explain", "Summarize what you know about", "Give three tips about", "Write a limerick about",
         "List common mistakes people make with", "Compare two views on", "Plan a weekend project on"]


class ScriptedEngine:
    """Implements the Engine protocol. Self-instruct prompts get a new task, chat prompts an answer whose length
    depends on the seed, judge prompts a verdict: "Score: N" when `write_scores`, otherwise no verdict, and the
    forced digit distribution then prefers long answers."""

    model_id = "scripted"

    def __init__(self, write_scores: bool = False, fail_after: int | None = None):
        self.write_scores = write_scores
        self.fail_after = fail_after
        self.calls = 0

    def chat_prompt(self, user: str) -> str:
        return f"<user>{user}</user><assistant>"

    def complete(self, prompt, *, max_tokens, temperature, top_p, seed, stop=()):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        rng = random.Random(seed)
        if prompt.endswith("<task>\n"):
            return Completion(f"{rng.choice(VERBS)} {rng.choice(TOPICS)} for a {rng.randint(5, 90)} year old.", 12,
                              "stop")
        if "<response>" in prompt:
            length = len(prompt.split("<response>")[1].split("</response>")[0])
            text = "The response is on topic."
            if self.write_scores:
                text += f"\nScore: {min(5, 1 + length // 40)}"
            return Completion(text, 8, "stop")
        words = rng.randint(3, 40)
        return Completion(" ".join(["word"] * words), words, "length" if words > 35 else "stop")

    def next_token_logprobs(self, prompt, candidates):
        if set(candidates) == {" A", " B"}:  # pairwise: the longer answer is better, a little bias to "A"
            first = prompt.split("<response_a>")[1].split("</response_a>")[0]
            second = prompt.split("<response_b>")[1].split("</response_b>")[0]
            p_a = 0.6 if len(first) == len(second) else (0.8 if len(first) > len(second) else 0.3)
            return {" A": math.log(0.9 * p_a), " B": math.log(0.9 * (1 - p_a))}
        length = len(prompt.split("<response>")[1].split("</response>")[0])
        target = min(5.0, length / 40)
        weights = {c: math.exp(-((int(c) - target) ** 2)) for c in candidates}
        total = sum(weights.values()) / 0.9  # 90 % of the mass on the digits
        return {c: math.log(w / total) for c, w in weights.items()}


class LogprobEngine(ScriptedEngine):
    """A scripted engine that also gives per-token log-probs: every word of a continuation costs `cost` nats (a
    fixed model per instance), so implicit rewards and consistency are known in advance."""

    def __init__(self, cost: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.cost = cost

    def continuation_logprobs(self, prompt, continuation):
        return [-self.cost * (1 + (len(w) % 3) / 10) for w in continuation.split()]
