"""Judge-vs-generate on one model: N candidates per IFEval prompt sampled as the loop samples them, each checked by
IFEval's code (loose: every instruction followed) and scored by the model's own judge (the run's judge mode); then
`recognition.judge_vs_generate` over the prompts. Candidates are appended a group of prompts at a time to
`jvg_candidates.jsonl`, so a killed measurement resumes where it stopped."""

from __future__ import annotations

from ..engines import complete_many
from ..judging import score_response
from ..records import StageFile
from ..seeds import derive_seed
from .recognition import judge_vs_generate

FILE = "jvg_candidates.jsonl"
GROUP = 4  # prompts sampled together (4 x N=4 = 16 sequences)


def measure_jvg(engine, target, measures, data, progress) -> dict:
    """Sample, check and judge what is not yet in the candidates file; the summary over all prompts."""
    from ..evals.ifeval import load_ifeval, offline_checkers

    offline_checkers()  # fail before sampling anything when the eval extra is missing
    records = load_ifeval(data.ifeval, measures.jvg_prompts)
    stage = StageFile(target.dir / FILE)
    done = stage.resume()
    todo = [r for r in records if str(r["key"]) not in done]
    for start in range(0, len(todo), GROUP):
        for record in _sample_group(engine(), todo[start:start + GROUP], target, measures):
            stage.append(record)
        progress("", len(records) - len(todo) + min(start + GROUP, len(todo)), len(records))
    prompts = stage.complete([str(r["key"]) for r in records])
    groups = [{"passes": [c["pass"] for c in p["candidates"]], "scores": [c["score"] for c in p["candidates"]],
               "lengths": [len(c["response"]) for c in p["candidates"]]} for p in prompts]
    judge = target.config.judge
    return {"model": f"M{target.k}", "prompts_file": str(data.ifeval), "samples": measures.jvg_samples,
            "temperature": target.config.responses.temperature, "top_p": target.config.responses.top_p,
            "max_tokens": measures.jvg_max_tokens, "judge_mode": judge.mode, "pass": "IFEval loose, all instructions",
            **judge_vs_generate(groups)}


def _sample_group(engine, records: list[dict], target, measures) -> list[dict]:
    """One record per prompt: its candidates (sampled with the loop's temperature and top-p), each with its IFEval
    checks and its judge score."""
    from ..evals.ifeval import check_response

    config, seed = target.config, target.config.seed
    seeds = [[derive_seed(seed, "jvg", str(r["key"]), k) for k in range(measures.jvg_samples)] for r in records]
    outs = complete_many(engine, [(engine.chat_prompt(r["prompt"]), s) for r, s in zip(records, seeds)],
                         max_tokens=measures.jvg_max_tokens, temperature=config.responses.temperature,
                         top_p=config.responses.top_p)
    found = []
    for record, record_seeds, completions in zip(records, seeds, outs):
        candidates = []
        for k, (s, out) in enumerate(zip(record_seeds, completions)):
            text = out.text.strip()
            check = check_response(record, text)
            judge_seeds = [derive_seed(seed, "jvg-judge", str(record["key"]), k, j)
                           for j in range(config.judge.judge_samples)]
            verdict = score_response(engine, record["prompt"], text, config.judge, judge_seeds)
            candidates.append({"response": text, "n_tokens": out.n_tokens, "finish_reason": out.finish_reason,
                               "seed": s, "loose": check["loose"], "strict": check["strict"],
                               "pass": all(check["loose"]), "score": verdict["score"]})
        found.append({"id": str(record["key"]), "key": record["key"], "prompt": record["prompt"],
                      "instruction_id_list": record["instruction_id_list"], "candidates": candidates})
    return found
