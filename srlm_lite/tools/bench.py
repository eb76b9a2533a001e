"""`srlm-lite bench`: our fast paths and a hand-assembled baseline, side by side in one process, same inputs.

Every figure is {"name", "unit", "ours", "baseline", "ratio", ...} with ratio > 1 meaning we are better (for a
time, ratio = baseline / ours; for a rate, ours / baseline). Nothing here is asserted by tests: timings are noisy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import JudgeConfig, RunConfig, TrainConfig, to_toml
from ..engines import SEQUENCES_PER_BATCH, EngineOptions, open_engine
from ..records import read_json
from ..runs import ModelSpec, versions
from ..seeds import derive_seed

FIGURES = ("sampling", "judging", "training", "blas", "iteration", "servers", "mlx")


@dataclass(frozen=True)
class BenchSize:
    """How much work each figure does: `quick` finishes in a few minutes on 2 cores."""

    prompts: int
    samples: int
    max_tokens: int
    judge_items: int  # labelled pairs judged (both answers), or sampled answers without a pairs file
    judge_samples: int
    baseline_judge_tokens: int
    train_pairs: int
    matmul_n: int
    iteration: dict
    server_prompts: int = 4  # prompts whose candidates the server figures sample (N each, max_tokens)


QUICK = BenchSize(prompts=4, samples=4, max_tokens=64, judge_items=2, judge_samples=3, baseline_judge_tokens=256,
                  train_pairs=8, matmul_n=512,
                  iteration={"iterations": 1, "instructions": {"num_prompts": 4},
                             "responses": {"samples": 4, "max_tokens": 48}, "judge": {"judge_samples": 2}},
                  server_prompts=2)
FULL = BenchSize(prompts=16, samples=4, max_tokens=128, judge_items=40, judge_samples=3, baseline_judge_tokens=256,
                 train_pairs=32, matmul_n=1024, iteration={"iterations": 1}, server_prompts=4)


def figure(name: str, unit: str, ours: float | None, baseline: float | None, *, higher_is_better: bool,
           **extra) -> dict:
    """One row of the table; ratio > 1 means ours is better, whichever way the unit points."""
    ratio = None
    if ours and baseline:
        ratio = ours / baseline if higher_is_better else baseline / ours
    return {"name": name, "unit": unit, "ours": _round(ours), "baseline": _round(baseline),
            "ratio": _round(ratio, 2), **extra}


def figure_line(row: dict) -> str:
    """One figure as a line of text: name, ours vs baseline in its unit, the ratio (or why there is none)."""
    if row.get("baseline") is None:
        return f"{row['name']}: {row['ours']} {row['unit']} ({row.get('skipped') or 'no baseline'})"
    return f"{row['name']}: {row['ours']} vs {row['baseline']} {row['unit']}, ratio {row['ratio']}x"


def machine() -> dict:
    import platform

    from ..blas import ensure_fast_blas

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "blas": ensure_fast_blas().message, "versions": versions()}


def run_bench(size: BenchSize, *, model: Path | None = None, pairs_file: Path | None = None,
              only: tuple[str, ...] = (), say: Callable[[str], None] = print) -> dict:
    """Every figure (or those named in `only`), in one process, on the same model and inputs."""
    from ..models.gguf import resolve_model_path
    from ..templates import seed_prompts

    model = resolve_model_path(model)
    pool = [s["prompt"] for s in seed_prompts()]
    prompts = pool[:: max(1, len(pool) // size.prompts)][: size.prompts]
    labelled = _labelled_pairs(pairs_file, max(size.judge_items, size.train_pairs))
    wanted = set(only) or set(FIGURES)
    figures, sampled = [], []

    def measured(rows: list[dict]) -> None:
        """Keep the figures and say each one at once: a later failure does not lose what was measured."""
        figures.extend(rows)
        for row in rows:
            say(f"  -> {figure_line(row)}")

    if "sampling" in wanted or (not labelled and wanted & {"judging", "training"}):
        row, sampled = bench_sampling(model, prompts, size, say)
        measured([row] if "sampling" in wanted else [])
    if "judging" in wanted:
        items = (judge_items_from_pairs(labelled[: size.judge_items]) if labelled else
                 [{"instruction": p, "response": outs[0]} for p, outs in sampled][: 2 * size.judge_items])
        measured(bench_judging(model, items, size, say))
    if "training" in wanted:
        train_pairs = ([{"id": f"pair-{p['index']}", "prompt": p["instruction"],
                         "chosen": p[f"response_{p['preferred']}"],
                         "rejected": p["response_b" if p["preferred"] == "a" else "response_a"]} for p in labelled]
                       if labelled else _pairs_from_samples(sampled))
        measured(bench_training(model, train_pairs[: size.train_pairs], size, say))
    if "blas" in wanted:
        say("blas: MLX matmul with and without OpenBLAS")
        measured([bench_blas(size)])
    if "iteration" in wanted:
        measured([bench_iteration(model, size, say)])
    if "servers" in wanted:
        from .bench_servers import bench_servers

        measured(bench_servers(model, prompts[:size.server_prompts], size.samples, size.max_tokens, say, figure))
    if "mlx" in wanted:
        from .bench_mlx import bench_mlx

        items = (judge_items_from_pairs(labelled[: size.judge_items]) if labelled else
                 [{"instruction": p, "response": outs[0]} for p, outs in sampled] or
                 [{"instruction": p, "response": "I do not know."} for p in prompts])
        measured(bench_mlx(model, prompts[:size.server_prompts], size.samples, size.max_tokens, items, say, figure))
    return {"figures": figures, "machine": machine(), "model": str(model),
            "pairs_file": str(pairs_file) if pairs_file else None}


def _labelled_pairs(pairs_file: Path | None, limit: int) -> list[dict]:
    if not pairs_file:
        return []
    from ..evals.judge_eval import load_judge_file

    pairs, _ = load_judge_file(pairs_file, limit)
    return pairs


def _pairs_from_samples(sampled: list[tuple[str, list[str]]]) -> list[dict]:
    """Throughput-only pairs from sampled candidates (two pairs per prompt; which is chosen does not matter)."""
    return [{"id": f"s{i}-{k}", "prompt": prompt, "chosen": outs[k], "rejected": outs[k + 1]}
            for i, (prompt, outs) in enumerate(sampled) for k in range(0, len(outs) - 1, 2)]


# ---------------------------------------------------------------------------------------------- sampling

def bench_sampling(model: Path, prompts: list[str], size: BenchSize,
                   say: Callable[[str], None]) -> tuple[dict, list[tuple[str, list[str]]]]:
    """Generated tokens/s for N candidates per prompt: our engine as `iterate` runs it vs create_chat_completion in
    a loop on the shipped GGUF with llama-cpp-python's defaults. Our batched engine on the shipped GGUF is measured
    too (`ours_shipped_gguf`), so the two levers (batching, F16 serving) show apart. Also returns our candidates
    ((prompt, texts) per prompt) for the figures that need answers."""
    from ..engines.llama_cpp import load_llama

    settings = dict(max_tokens=size.max_tokens, temperature=0.7, top_p=0.9)
    seeds = [[derive_seed(0, "bench", p, k) for k in range(size.samples)] for p in range(len(prompts))]
    say(f"sampling: {len(prompts)} prompts x {size.samples} candidates, up to {size.max_tokens} tokens")
    rates, sampled = {}, []
    for name, serve in (("ours", "f16"), ("ours_shipped_gguf", "gguf")):
        engine = open_engine(ModelSpec(model), EngineOptions(serve=serve))
        started = time.perf_counter()
        outs = engine.complete_many([(engine.chat_prompt(p), s) for p, s in zip(prompts, seeds)], **settings)
        rates[name] = sum(o.n_tokens for group in outs for o in group) / (time.perf_counter() - started)
        sampled = sampled or [(prompt, [o.text.strip() for o in group]) for prompt, group in zip(prompts, outs)]
        del engine
    # what a user would write: the shipped file, llama-cpp-python's attention default, one completion at a time
    llm = load_llama(model, flash_attn=False)
    started, base_tokens = time.perf_counter(), 0
    for prompt, prompt_seeds in zip(prompts, seeds):
        for seed in prompt_seeds:
            out = llm.create_chat_completion([{"role": "user", "content": prompt}], seed=seed, top_k=0, min_p=0.0,
                                             repeat_penalty=1.0, **settings)
            base_tokens += out["usage"]["completion_tokens"]
    base_rate = base_tokens / (time.perf_counter() - started)
    row = figure("sampling", "generated tokens/s", rates["ours"], base_rate, higher_is_better=True,
                 ours_shipped_gguf=_round(rates["ours_shipped_gguf"]),
                 compares=f"N={size.samples} candidates of each of {SEQUENCES_PER_BATCH // size.samples} prompts "
                          "decoded in one llama.cpp multi-sequence batch sharing each prompt's KV cache, flash "
                          "attention, weights served as F16 (ours_shipped_gguf: the same on the shipped Q4_1 file) "
                          "vs create_chat_completion one after another on the shipped file, llama-cpp-python's "
                          "defaults (flash attention off)")
    return row, sampled


# ---------------------------------------------------------------------------------------------- judging

def bench_judging(model: Path, items: list[dict], size: BenchSize, say: Callable[[str], None]) -> list[dict]:
    """Seconds per judged response: our judges vs the paper's (J sampled verdicts, each a full generation).

    `items` are {"instruction", "response"} (with "pair"/"side"/"preferred" when they come from labelled pairs,
    so each judge's agreement with the labels is reported beside its speed)."""
    # ours: the engine `iterate` uses; the paper's way: the shipped file, llama-cpp-python's defaults, one at a time
    engines = {True: open_engine(ModelSpec(model)),
               False: open_engine(ModelSpec(model), EngineOptions(batched=False, serve="gguf", flash_attn=False))}
    judges = {
        "forced": JudgeConfig(mode="forced", judge_samples=size.judge_samples),
        "expected": JudgeConfig(mode="expected"),
        "paper": JudgeConfig(mode="sampled", judge_samples=size.judge_samples, max_tokens=size.baseline_judge_tokens),
    }
    results = {}
    for name, config in judges.items():
        say(f"judging: {len(items)} responses with the {name} judge")
        # the paper's way: one full generation after another
        results[name] = _judge_all(engines[name != "paper"], items, config)
    base = results["paper"]
    figures = []
    for name in ("forced", "expected"):
        ours = results[name]
        figures.append(figure(
            f"judging_{name}", "seconds per judged response", ours["seconds_per_response"],
            base["seconds_per_response"], higher_is_better=False,
            agreement_ours=ours["agreement"], agreement_baseline=base["agreement"],
            parse_rate_baseline=base["parse_rate"], mean_verdict_tokens_baseline=base["mean_tokens"],
            rank_correlation_with_baseline=_spearman(ours["scores"], base["scores"]),
            rank_correlation_forced_expected=_spearman(results["forced"]["scores"], results["expected"]["scores"]),
            compares=_JUDGE_COMPARES[name].format(j=size.judge_samples, t=size.baseline_judge_tokens)))
    return figures


_JUDGE_COMPARES = {
    "forced": "forced judge: J={j} 24-token justifications sampled together, score = expected digit after a forced "
              "'Score: ' when none was written, rubric KV reused, F16 weights; vs the paper's J={j} sampled verdicts "
              "of up to {t} tokens one after another on the shipped file, score parsed only",
    "expected": "default judge: one forward pass per response, expected digit after 'Score: ', rubric KV reused, F16 "
                "weights; vs the paper's J={j} sampled verdicts of up to {t} tokens on the shipped file",
}


def _judge_all(engine, items: list[dict], config: JudgeConfig) -> dict:
    from ..judging import score_response

    started, scores, found = time.perf_counter(), [], []
    for index, item in enumerate(items):
        seeds = [derive_seed(0, "bench-judge", index, j) for j in range(config.judge_samples)]
        result = score_response(engine, item["instruction"], item["response"], config, seeds)
        found += result["verdicts"]
        scores.append(result["score"])
    seconds = time.perf_counter() - started
    return {"seconds_per_response": seconds / len(items), "scores": scores, "agreement": _agreement(items, scores),
            "parse_rate": round(sum(v["source"] == "parsed" for v in found) / len(found), 4),
            "mean_tokens": round(sum(len(engine.encode_text(v["text"])) for v in found) / len(found), 1)}


def _agreement(items: list[dict], scores: list[float | None]) -> dict | None:
    """Pairwise accuracy (ties half) with its Wilson interval, when the items come from labelled pairs."""
    from ..stats import pair_credit, proportion

    by_pair: dict[int, dict] = {}
    for item, score in zip(items, scores):
        if "pair" in item:
            by_pair.setdefault(item["pair"], {"preferred": item["preferred"]})[item["side"]] = score
    if not by_pair:
        return None
    return proportion([pair_credit(p.get("a"), p.get("b"), p["preferred"]) for p in by_pair.values()])


def _spearman(x: list[float | None], y: list[float | None]) -> float | None:
    from ..stats import spearman_rho

    both = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    if len(both) < 3:
        return None
    return spearman_rho([a for a, _ in both], [b for _, b in both])


def judge_items_from_pairs(pairs: list[dict]) -> list[dict]:
    """Both answers of each labelled pair as judged items (see `evals.judge_eval.load_judge_file`)."""
    return [{"instruction": p["instruction"], "response": p[f"response_{side}"], "pair": p["index"], "side": side,
             "preferred": p["preferred"]} for p in pairs for side in ("a", "b")]


# ---------------------------------------------------------------------------------------------- training

def bench_training(model: Path, pairs: list[dict], size: BenchSize, say: Callable[[str], None]) -> list[dict]:
    """DPO training tokens/s: ours (reference log-probs cached, length-bucketed batches, float32 on BLAS) vs the
    same LoRA DPO step written plainly (a frozen reference model run every step, batches in file order); and ours
    as a fraction of the measured matmul roofline. PyTorch + PEFT only when installed (the `bench` extra)."""
    from ..mlx_runtime import matmul_gflops
    from ..models.tokenizer import ChatTokenizer
    from ..training.dpo import tokenize_pairs

    config = TrainConfig(batch_size=2, max_length=448)
    tokenizer = ChatTokenizer.from_gguf(model)
    tokenized, _ = tokenize_pairs(pairs, tokenizer, config.max_length)
    tokens = sum(len(p.chosen) + len(p.rejected) for p in tokenized)
    say(f"training: {len(tokenized)} pairs ({tokens} tokens), ours then the plain loop")
    ours = _train_seconds(model, tokenized, config, tokenizer.eos_token_id, plain=False)
    plain = _train_seconds(model, tokenized, config, tokenizer.eos_token_id, plain=True)
    n_params = ours["parameters"]
    roofline = matmul_gflops(size.matmul_n, 3)
    achieved = 4.0 * n_params * tokens / ours["seconds"] / 1e9  # forward 2N + backward through activations 2N
    figures = [figure("training", "DPO training tokens/s", tokens / ours["seconds"], tokens / plain["seconds"],
                      higher_is_better=True, pairs=len(tokenized), tokens=tokens,
                      achieved_gflops=round(achieved, 1), matmul_roofline_gflops=round(roofline, 1),
                      roofline_fraction=round(achieved / roofline, 3),
                      compares="reference log-probs computed once and cached, length-bucketed batches; vs a frozen "
                               "reference model run at every step and batches in file order (padding)")]
    figures.append(_torch_figure(model, tokenized, config, tokenizer.eos_token_id, tokens / ours["seconds"], say))
    return figures


def _lora_policy(model: Path, config: TrainConfig):
    """The float32 MLX model of `model` with a fresh LoRA (seeded), and its parameter count before the LoRA."""
    from ..mlx_runtime import mx, tree_flatten
    from ..models.mlx_model import load_mlx_model
    from ..training.lora import attach_lora

    mx.random.seed(0)
    policy = load_mlx_model(model, dequantize=True)
    n_params = sum(v.size for _, v in tree_flatten(policy.parameters()))
    attach_lora(policy, rank=config.lora_rank, scale=config.lora_scale, num_layers=config.lora_layers)
    return policy, n_params


def _train_seconds(model: Path, tokenized, config: TrainConfig, pad_id: int, plain: bool) -> dict:
    """Seconds of reference log-probs plus one epoch of DPO: ours is `train`'s own code, the baseline the plain
    loop below."""
    from ..training.dpo import reference_logps, train_dpo

    policy, n_params = _lora_policy(model, config)
    if plain:
        return {"seconds": _plain_dpo_seconds(policy, model, tokenized, config, pad_id), "parameters": n_params}
    with tempfile.TemporaryDirectory(prefix="srlm-bench-train-") as tmp:
        started = time.perf_counter()
        reference = reference_logps(policy, tokenized, Path(tmp), config.batch_size, pad_id)
        train_dpo(policy, tokenized, reference, config, Path(tmp), pad_id=pad_id, seed=0)
        return {"seconds": time.perf_counter() - started, "parameters": n_params}


def _plain_dpo_seconds(policy, model: Path, tokenized, config: TrainConfig, pad_id: int) -> float:
    """The same LoRA DPO step written plainly: a frozen reference model run at every step, batches in file order."""
    from ..mlx_runtime import mx, nn, optim
    from ..models.mlx_model import load_mlx_model
    from ..training.dpo import batch_logps
    from ..training.losses import dpo_loss

    reference_model = load_mlx_model(model, dequantize=True)
    batches = [tokenized[i:i + config.batch_size] for i in range(0, len(tokenized), config.batch_size)]
    started = time.perf_counter()

    def loss_fn(m, batch):
        c, r = batch_logps(m, batch, pad_id)
        rc, rr = batch_logps(reference_model, batch, pad_id)
        return dpo_loss(c, r, mx.stop_gradient(rc), mx.stop_gradient(rr), config.beta)

    optimizer = optim.Adam(learning_rate=config.learning_rate)
    step = nn.value_and_grad(policy, loss_fn)
    for batch in batches:
        (loss, _), grads = step(policy, batch)
        optimizer.update(policy, grads)
        mx.eval(policy.trainable_parameters(), optimizer.state, loss)
    return time.perf_counter() - started


def _torch_figure(model: Path, tokenized, config: TrainConfig, pad_id: int, ours_tokens_per_second: float,
                  say: Callable[[str], None]) -> dict:
    """The same LoRA DPO step in PyTorch + PEFT on the CPU (the `bench` extra); skipped with a note without it."""
    from . import bench_torch

    reason = bench_torch.available()
    if reason is not None:
        return figure("training_torch", "DPO training tokens/s", ours_tokens_per_second, None, higher_is_better=True,
                      skipped=f"{reason}; install with pip install -e '.[bench]'")
    say("training: the same LoRA DPO step in PyTorch + PEFT")
    theirs = bench_torch.dpo_tokens_per_second(model, tokenized, config, pad_id, threads=os.cpu_count() or 1)
    return figure("training_torch", "DPO training tokens/s", ours_tokens_per_second, theirs["tokens_per_second"],
                  higher_is_better=True, torch=theirs["torch"], threads=theirs["threads"],
                  compares=f"ours vs the same LoRA DPO step in PyTorch {theirs['torch']} + PEFT on the CPU "
                           f"(torch.set_num_threads({theirs['threads']})): the same float32 weights (our GGUF "
                           f"dequantized), LoRA (rank {config.lora_rank}, alpha = scale x rank, same blocks and "
                           "modules), length-bucketed batches, reference log-probs computed once with the adapter "
                           "disabled, Adam, one epoch")


# ---------------------------------------------------------------------------------------------- BLAS

def bench_blas(size: BenchSize) -> dict:
    """MLX float32 matmul GFLOP/s with our BLAS arrangement (OpenBLAS preloaded) vs MLX's wheel as it comes."""
    from ..mlx_runtime import matmul_gflops

    ours = matmul_gflops(size.matmul_n, 3)
    code = (f"from srlm_lite.mlx_runtime import matmul_gflops; "
            f"print(matmul_gflops({size.matmul_n}, 2))")
    env = {**os.environ, "SRLM_BLAS": "none", "LD_PRELOAD": ""}
    baseline = None
    if sys.platform != "darwin":
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
        baseline = float(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
    return figure("blas", "MLX matmul GFLOP/s", ours, baseline, higher_is_better=True, n=size.matmul_n,
                  compares=f"{size.matmul_n}x{size.matmul_n} float32 matmul with OpenBLAS loaded vs without "
                           "(SRLM_BLAS=none: the reference BLAS MLX's Linux wheel links)")


# ---------------------------------------------------------------------------------------------- one iteration

def bench_iteration(model: Path, size: BenchSize, say: Callable[[str], None]) -> dict:
    """Wall time per stage and peak memory of one `iterate` iteration, fast paths on vs off (separate processes)."""
    from ..config import from_dict

    runs = {}
    with tempfile.TemporaryDirectory(prefix="srlm-bench-") as tmp:
        for name, fast in (("ours", True), ("baseline", False)):
            engine = {"path": str(model), "batched": fast, "serve": "f16" if fast else "gguf", "flash_attn": fast}
            config = from_dict({**size.iteration, "model": engine})
            say(f"iteration ({name}): one iteration in a subprocess, fast paths {'on' if fast else 'off'}")
            runs[name] = _iterate_subprocess(config, Path(tmp) / name)
    ours, base = runs["ours"], runs["baseline"]
    return figure("iteration", "seconds per iteration", ours["seconds"], base["seconds"], higher_is_better=False,
                  stages_ours=ours["stages"], stages_baseline=base["stages"],
                  peak_rss_mb_ours=ours["peak_rss_mb"], peak_rss_mb_baseline=base["peak_rss_mb"],
                  # the two sample their own answers (other weights, other float noise): train time follows these
                  pairs_ours=ours["pairs"], pairs_baseline=base["pairs"],
                  mean_response_tokens_ours=ours["mean_response_tokens"],
                  mean_response_tokens_baseline=base["mean_response_tokens"],
                  config=size.iteration or "default",
                  compares="one iteration (instructions, responses, judge, pairs, train) as iterate runs it vs "
                           "with its speed-only options off: [model] batched = false, serve = 'gguf', "
                           "flash_attn = false (the judge mode and everything else the same)")


def _iterate_subprocess(config: RunConfig, out: Path) -> dict:
    out.mkdir(parents=True)
    (out / "bench.toml").write_text(to_toml(config))
    # -P: the child imports srlm_lite from the environment, as this process did, never from the working directory
    command = [sys.executable, "-P", "-m", "srlm_lite", "iterate", "--config", str(out / "bench.toml"), "--out",
               str(out / "run")]
    started = time.perf_counter()
    with open(out / "stderr.log", "wb") as log:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        peak_mb = _wait_for_peak_rss_mb(process)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"bench iteration failed: {(out / 'stderr.log').read_text()[-2000:]}")
    summary = read_json(out / "run" / "iter_1" / "manifest.json")["summary"]
    return {"seconds": seconds, "stages": summary["seconds"], "peak_rss_mb": round(peak_mb, 1),
            "pairs": summary["pairs"], "mean_response_tokens": summary["mean_response_tokens"]}


def _wait_for_peak_rss_mb(process: subprocess.Popen) -> float:
    """Wait for the child; its own peak resident memory in MB.

    Linux: the high-water mark of the child's address space (VmHWM), read until it exits. Not the rusage
    ru_maxrss: Linux carries the forking parent's peak into the child's across exec, so a child forked by a
    bench that has grown to gigabytes would report the bench's size. Elsewhere (macOS): ru_maxrss, in bytes.
    """
    status, peak_kb = Path(f"/proc/{process.pid}/status"), 0
    if not status.exists():
        _, code, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(code)
        return usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    while process.poll() is None:
        peak_kb = max(peak_kb, _vm_hwm_kb(status))
        time.sleep(0.2)
    return peak_kb / 1024


def _vm_hwm_kb(status: Path) -> int:
    """VmHWM (peak resident set, KiB) from a /proc/PID/status file; 0 once the process is gone."""
    try:
        text = status.read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmHWM:")), 0)


# ---------------------------------------------------------------------------------------------- helpers

def _round(value, digits: int = 3):
    return None if value is None else round(float(value), digits)
