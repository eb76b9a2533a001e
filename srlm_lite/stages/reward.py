"""Stage 3b, the reward: each candidate's reward under the run's reward source (see `rewards`), from its judgment,
its log-probs under this and the previous model, and the constraints it meets; with `--consistency`, each prompt's
consistency weight C."""

from __future__ import annotations

from ..records import StageFile, group_by, read_jsonl, recorded_stage
from ..rewards import REWARD_SOURCES, group_rewards, looping, mix_weights, needed_components
from ..rewards.combine import demote_loops
from ..rewards.signal import signal
from . import judge as judge_stage
from . import responses as responses_stage

FILE = "rewards.jsonl"
FIELDS = {"id": str, "prompt_id": str}  # what a record must hold for the pairs stage (and `score`)


def run(ctx) -> dict:
    """One record per response (same id): `score` (its reward), the `components` it was made of, and the prompt's
    `consistency` where it applies."""
    from ..rewards.measure import Measurer

    candidates = ctx.require(responses_stage.FILE, "responses")
    judgments = {j["id"]: j for j in ctx.require(judge_stage.FILE, "judge")}
    reward = ctx.config.reward
    source = REWARD_SOURCES[reward.source]
    weights, needed = mix_weights(reward), needed_components(reward)
    measure = Measurer(ctx)

    def produce(stage: StageFile, done: dict) -> list[str]:
        groups = group_by(candidates)
        for finished, group in enumerate(groups.values(), 1):
            if all(item["id"] in done for item in group):
                continue
            components = [measure.components(item, judgments, needed) for item in group]
            ranked = group_rewards(source.name, components, tie_break=reward.tie_break, weights=weights)
            weight = measure.consistency(group, ranked) if reward.consistency else None  # the source's own ranking
            loops = looping(reward, [item["response"] for item in group])
            for item, found, value, loop in zip(group, components, demote_loops(ranked, loops), loops):
                if item["id"] not in done:
                    stage.append(_record(item, found, value, weight, loop))
            if ctx.hooks.progress:
                ctx.hooks.progress("reward", finished, len(groups))
        return [item["id"] for item in candidates]

    stats = recorded_stage(ctx.dir / FILE, produce, summarize)
    records = {r["id"]: r for r in read_jsonl(ctx.dir / FILE)}
    return {**stats, "source": reward.source, "signal": run_signal(candidates, records)}


def run_signal(candidates: list[dict], records: dict[str, dict]) -> dict:
    """The signal check's figures on the iteration's own candidates: ties, the reward's correlation with length,
    and, on prompts with verifiable constraints, the best/random/worst-of-N share of constraints met."""
    def figures(item: dict) -> dict:
        record = records.get(item["id"], {})
        met = record.get("components", {}).get("met")
        return {"reward": record.get("score"), "length": len(item["response"]),
                "pass": sum(met) / len(met) if met else None}

    return signal([[figures(item) for item in group] for group in group_by(candidates).values()])


def _record(item: dict, components: dict, score: float | None, weight: float | None, loop: bool) -> dict:
    record = {"id": item["id"], "prompt_id": item["prompt_id"], "score": score, "components": components}
    if weight is not None:
        record["consistency"] = weight
    if loop:
        record["loop"] = True  # ranked below the prompt's other candidates ([reward] max_repetition)
    return record


def summarize(records: list[dict], seconds: float) -> dict:
    scored = [r["score"] for r in records if r["score"] is not None]
    weights = {r["prompt_id"]: r["consistency"] for r in records if "consistency" in r}
    constrained = [r["components"]["met"] for r in records if "met" in r["components"]]
    return {
        "rewarded": len(scored),
        "unrewarded": len(records) - len(scored),
        "mean_reward": round(sum(scored) / len(scored), 4) if scored else None,
        "constrained_responses": len(constrained),
        "constraints_met": round(sum(sum(m) for m in constrained) / max(1, sum(len(m) for m in constrained)), 4)
        if constrained else None,
        "mean_consistency": round(sum(weights.values()) / len(weights), 4) if weights else None,
        "loops_ranked_last": sum(bool(r.get("loop")) for r in records),
        "seconds": round(seconds, 2),
    }
