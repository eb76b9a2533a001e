"""Run configuration: dataclasses with the paper's defaults, TOML in, flag overrides on top, resolved TOML out."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engines.serving import SERVE_KINDS
from .judging import JUDGE_FORMATS, JUDGE_MODES
from .training import LOSS_TYPES


def _opt(default, help: str, *, choices: tuple | None = None, flag: str | None = None):
    """A config field: its default, its help text, its allowed values (checked on load, offered as CLI choices) and
    the name of its command-line flag where it has one (see `cli/options.py`)."""
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


def _modes_help(formats: dict) -> str:
    return "; ".join(f"{name}: {fmt.help}" for name, fmt in formats.items())


@dataclass
class ModelConfig:
    path: str = _opt("", "GGUF model file; empty = the embedded SmolLM2-135M-Instruct Q4_1", flag="model")
    n_ctx: int = _opt(4096, "llama.cpp context length, shared by the candidates decoded together (4 prompts x 4 "
                             "x 128 tokens); the judge prompt alone exceeds llama.cpp's 512 default")
    n_threads: int = _opt(0, "llama.cpp threads; 0 = all cores")
    n_batch: int = _opt(512, "llama.cpp prompt batch size")
    batched: bool = _opt(True, "decode the candidates of several prompts (16 sequences: 4 prompts x N=4), and the J "
                         "judge justifications of a response, together in one llama.cpp multi-sequence batch "
                         "sharing each prompt's KV cache; false = one after another (same distribution, slower)")
    serve: str = _opt("f16", "weights llama.cpp serves: f16 = a copy of the GGUF dequantized to F16 once (cached in "
                             "~/.cache/srlm-lite, or $SRLM_CACHE): the same weights through llama.cpp's batched "
                             "kernels (here: batched sampling 1.3x and judging 2.1x faster, one sequence alone 0.8x) "
                             "and log-probs within 0.003 nats/token of the float32 model MLX trains (0.06 for the "
                             "shipped Q4_1); gguf = the file as it is", choices=SERVE_KINDS)
    flash_attn: bool = _opt(True, "llama.cpp flash attention (skips the KV cells of other sequences in a batch)")


@dataclass
class InstructionsConfig:
    num_prompts: int = _opt(52, "new prompts to keep per iteration", flag="prompts")
    max_attempts: int = _opt(0, "generation attempts per iteration; 0 = 4 x num_prompts")
    seed_shots: int = _opt(6, "few-shot examples drawn from the seed pool (paper: 6)")
    generated_shots: int = _opt(2, "few-shot examples drawn from prompts generated so far (paper: 2)")
    temperature: float = _opt(0.6, "sampling temperature (paper: 0.6)")
    top_p: float = _opt(0.9, "nucleus sampling (paper: 0.9)")
    max_tokens: int = _opt(80, "token limit of one generated prompt")
    rouge_threshold: float = _opt(0.7, "drop a prompt whose ROUGE-L F to any kept or seed prompt exceeds this")
    min_words: int = _opt(4, "drop prompts shorter than this many words")
    max_words: int = _opt(120, "drop prompts longer than this many words")


@dataclass
class ResponsesConfig:
    samples: int = _opt(4, "candidate responses per prompt (paper: N=4)", flag="samples")
    temperature: float = _opt(0.7, "sampling temperature (paper: 0.7)")
    top_p: float = _opt(0.9, "nucleus sampling (paper: 0.9)")
    max_tokens: int = _opt(128, "token limit of one candidate response", flag="max-tokens")


@dataclass
class JudgeConfig:
    judge_samples: int = _opt(3, "judgments per response, averaged (paper: 3)", flag="judge-samples")
    mode: str = _opt("expected", _modes_help(JUDGE_FORMATS), choices=JUDGE_MODES, flag="judge-mode")
    temperature: float = _opt(0.7, "sampling temperature of the judgment")
    top_p: float = _opt(0.9, "nucleus sampling of the judgment")
    max_tokens: int = _opt(24, "token limit of the justification (sampled mode: of the whole verdict)")
    min_digit_mass: float = _opt(0.5, "expected/forced: below this probability on the digits 0-5, no score")


@dataclass
class PairsConfig:
    min_score_gap: float = _opt(0.0, "drop a prompt whose best-worst mean score gap is below this (ties always "
                                "dropped)", flag="min-score-gap")
    length_tie_break: bool = _opt(False, "length-aware tie-break (Meta-Rewarding): of the answers within "
                                  "tie_tolerance of the best score the shortest is chosen, of those within it of "
                                  "the worst the longest is rejected", flag="length-tie-break")
    tie_tolerance: float = _opt(0.25, "score distance counted as near-equal by the length-aware tie-break")


@dataclass
class TrainConfig:
    beta: float = _opt(0.1, "DPO beta (paper: 0.1)")
    learning_rate: float = _opt(2e-5, "Adam learning rate of the LoRA weights (paper, full fine-tuning: 1e-6; "
                                "at 5e-5 M1 ran to the token limit in every answer)", flag="learning-rate")
    epochs: int = _opt(1, "passes over the iteration's pairs (a second pass memorises them: margins of 20+ nats)",
                       flag="epochs")
    batch_size: int = _opt(2, "pairs per optimizer step")
    lora_rank: int = _opt(8, "LoRA rank")
    lora_scale: float = _opt(20.0, "LoRA scale (mlx-lm convention; GGUF alpha = scale x rank)")
    lora_layers: int = _opt(-1, "transformer blocks given LoRA, counted from the top; -1 = all")
    max_length: int = _opt(448, "token limit of prompt + response; longer responses are truncated")
    dequantize: bool = _opt(True, "train on a float32 copy of the weights (fast on CPU BLAS); false = quantized")
    loss: str = _opt("sigmoid", "preference loss: sigmoid (DPO), ipo, hinge (SLiC), rpo (DPO + NLL of the chosen "
                     "answer, iterative RPO)", choices=LOSS_TYPES, flag="loss")
    rpo_alpha: float = _opt(1.0, "weight of the chosen answer's per-token NLL in the rpo loss")
    length_normalize: bool = _opt(False, "log-probs averaged per response token instead of summed (counters the "
                                  "drift to longer answers; scale beta up accordingly)", flag="length-normalize")


@dataclass
class EvalConfig:
    judge_pairs: str = _opt("", "after each iteration: `eval judge` of M_t's judge on this labelled-pairs JSONL")
    ifeval_prompts: str = _opt("", "after each iteration: `eval ifeval` of M_t on this IFEval JSONL")
    h2h_prompts: str = _opt("", "after each iteration: `eval h2h` of M_t vs the starting model on these prompts")
    limit: int = _opt(40, "items of each evaluation file used (the first N)", flag="eval-limit")
    baseline: bool = _opt(True, "also evaluate the starting model M0 once, into evals/")


@dataclass
class RunConfig:
    iterations: int = _opt(3, "self-rewarding iterations (M1 -> M2 -> M3 -> M4 in the paper's naming)",
                           flag="iterations")
    seed: int = _opt(0, "run seed; every sample's seed derives from (seed, iteration, prompt, sample)", flag="seed")
    init: str = _opt("", "starting model's adapter directory (from `srlm-lite sft`); empty = the base model")
    model: ModelConfig = field(default_factory=ModelConfig)
    instructions: InstructionsConfig = field(default_factory=InstructionsConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class SFTConfig:
    """`srlm-lite sft`: supervised LoRA fine-tuning (IFT + EFT), the paper's seed stage that makes M1."""

    learning_rate: float = _opt(1e-4, "Adam learning rate of the LoRA weights")
    epochs: int = _opt(2, "passes over the examples")
    batch_size: int = _opt(4, "examples per optimizer step")
    lora_rank: int = _opt(8, "LoRA rank")
    lora_scale: float = _opt(20.0, "LoRA scale (mlx-lm convention)")
    lora_layers: int = _opt(-1, "transformer blocks given LoRA, counted from the top; -1 = all")
    max_length: int = _opt(1024, "token limit of prompt + response (a judge prompt with its answer is ~700)")
    seed: int = _opt(0, "shuffling and LoRA initialisation seed")


class ConfigError(ValueError):
    """A config file or override names an unknown key or gives a value of the wrong type."""


def from_dict(data: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """A RunConfig from nested dicts (as TOML gives), on top of `base` (default: the paper's defaults)."""
    config = copy.deepcopy(base) if base else RunConfig()
    for key, value in data.items():
        if isinstance(value, dict):
            section = _field_value(config, key)
            if not dataclasses.is_dataclass(section):
                raise ConfigError(f"[{key}] is not a config section")
            for sub_key, sub_value in value.items():
                _set(section, sub_key, sub_value, f"{key}.{sub_key}")
        else:
            _set(config, key, value, key)
    validate(config)
    return config


def load(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults < TOML file < overrides ({"section.key": value}; None values are ignored)."""
    config = RunConfig()
    if path:
        with open(path, "rb") as fh:
            config = from_dict(tomllib.load(fh), config)
    nested: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        head, _, tail = dotted.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    return from_dict(nested, config)


def to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_toml(config: RunConfig) -> str:
    """The resolved config as TOML (top-level scalars, then one table per section)."""
    data = to_dict(config)
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def validate(config: RunConfig) -> None:
    checks = [
        (config.iterations >= 1, "iterations must be >= 1"),
        (config.instructions.num_prompts >= 1, "instructions.num_prompts must be >= 1"),
        (config.responses.samples >= 2, "responses.samples must be >= 2 (a pair needs two candidates)"),
        (config.judge.judge_samples >= 1, "judge.judge_samples must be >= 1"),
        (0.0 <= config.instructions.rouge_threshold <= 1.0, "instructions.rouge_threshold must be in [0, 1]"),
        (config.train.batch_size >= 1 and config.train.epochs >= 1, "train.batch_size and train.epochs must be >= 1"),
        (config.model.n_ctx >= 512, "model.n_ctx must be >= 512"),
        (config.train.beta > 0, "train.beta must be > 0"),
        (config.eval.limit >= 1, "eval.limit must be >= 1"),
        (config.pairs.min_score_gap >= 0 and config.pairs.tie_tolerance >= 0,
         "pairs.min_score_gap and pairs.tie_tolerance must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for dotted, f, value in walk(config):
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{dotted} must be one of {', '.join(map(str, choices))}, got {value!r}")


def walk(config, prefix: str = ""):
    """(dotted key, dataclass field, value) of every setting of a config, sections included recursively."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            yield from walk(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value


def setting(dotted: str, config=None) -> tuple[dataclasses.Field, Any]:
    """The field and the value (default: the paper's default) of one setting, e.g. "judge.mode"."""
    for key, f, value in walk(config or RunConfig()):
        if key == dotted:
            return f, value
    raise ConfigError(f"unknown config key '{dotted}'")


def field_help(section_cls) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(section_cls)}


def from_plain(data: dict[str, Any]) -> RunConfig:
    """A RunConfig from `to_dict` output (e.g. a manifest), checked like a TOML file."""
    return from_dict(data)


def _field_value(obj, key: str):
    names = {f.name for f in dataclasses.fields(obj)}
    if key not in names:
        raise ConfigError(f"unknown config key '{key}' (known: {', '.join(sorted(names))})")
    return getattr(obj, key)


def _set(obj, key: str, value: Any, label: str) -> None:
    current = _field_value(obj, key)
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"'{label}' is a section; give it as a [{label}] table")
    expected = type(current)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"'{label}' must be {expected.__name__}, got {value!r}")
    setattr(obj, key, value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} as TOML")
