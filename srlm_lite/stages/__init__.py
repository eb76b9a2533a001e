"""The paper's five stages as a table: each is `run(ctx) -> stats` on an IterationContext, in this order.

Each stage reads the previous stage's JSONL in the iteration folder and writes its own; nothing reaches back.
"""

from __future__ import annotations

from . import instructions, judge, pairs, responses, reward, train

STAGES = {
    "instructions": instructions.run,
    "responses": responses.run,
    "judge": judge.run,
    "reward": reward.run,
    "pairs": pairs.run,
    "train": train.run,
}
FILES = {
    "instructions": instructions.FILE,
    "responses": responses.FILE,
    "judge": judge.FILE,
    "reward": reward.FILE,
    "pairs": pairs.FILE,
    "train": train.LOG_FILE,
}
