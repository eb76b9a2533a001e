"""Run configuration: dataclasses with the paper's defaults, TOML in, flag overrides on top, resolved TOML out."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engines import BACKENDS, default_backend
from .engines.serving import SERVE_KINDS
from .engines.server_kinds import SERVERS, help_text as server_help
from .errors import InputError
from .judging import JUDGE_FORMATS, JUDGE_MODES
from .rewards import FAMILIES, HELD_OUT_FAMILIES, REWARD_SOURCES, SOURCES, TRAIN_FAMILIES
from .rewards.constraints import parse_families
from .training import LOSS_TYPES, OBJECTIVES


def _opt(default, help: str, *, choices: tuple | None = None, flag: str | None = None):
    """A config field: its default, its help text, its allowed values (checked on load, offered as CLI choices) and
    the name of its command-line flag where it has one (see `cli/options.py`)."""
    return field(default=default, metadata={"help": help, "choices": choices, "flag": flag})


def _modes_help(formats: dict) -> str:
    return "; ".join(f"{name}: {fmt.help}" for name, fmt in formats.items())


@dataclass
class ModelConfig:
    path: str = _opt("", "the model: a GGUF file (any architecture and quantization of llama, qwen2, qwen3, gemma3, "
                         "phi3), a model folder (config.json + *.safetensors + tokenizer files; served by the MLX "
                         "engine) or a Hugging Face repository name in the local cache (org/name); empty = the "
                         "embedded SmolLM2-135M-Instruct Q4_1", flag="model")
    backend: str = _opt(default_backend(), "engine that samples and judges: mlx (default on Apple Silicon, on the "
                        "GPU) or llama-cpp (default elsewhere: about 6x faster than MLX on a laptop CPU, "
                        "`bench --only mlx`)",
                        choices=BACKENDS, flag="backend")
    chat_template: str = _opt("", "a Jinja chat template file, for models without one (or to replace theirs)",
                              flag="chat-template")
    mlx_bits: int = _opt(0, "MLX engine: re-quantize the dequantized weights to MLX's 4 or 8 bits (0 = float32, the "
                         "fastest on a CPU; quantized saves memory on Apple Silicon); training keeps float32 weights "
                         "(or, with [train] dequantize = false, a GGUF's Q4_0/Q4_1/Q8_0 as they are)",
                         choices=(0, 4, 8),
                         flag="mlx-bits")
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
    base_url: str = _opt("", "backend openai: the server's OpenAI base URL (e.g. http://gpu-box:8000/v1); "
                         "instructions, responses, judge and every eval go through its /completions", flag="base-url")
    api_key_env: str = _opt("", "backend openai: the name of the environment variable holding the server's API key "
                            "(the key is read from it per request, never written to a log, the manifest or the run)",
                            flag="api-key-env")
    concurrency: int = _opt(4, "backend openai: requests in flight at most (candidates, and judged responses)",
                            flag="concurrency")
    serve_local: bool = _opt(False, "backend openai: srlm-lite starts the server itself on 127.0.0.1 with M_t's "
                             "adapter (restarted for each iteration's adapter, and when it dies), waits until it is "
                             "ready, logs it to the iteration's server.log and stops it", flag="serve-local")
    server: str = _opt("llama-cpp-python", "backend openai: which server it is (how M_t's adapter reaches it): "
                       + server_help(), choices=SERVERS, flag="server")
    served_model: str = _opt("", "backend openai: the model name requests carry (vllm, other: the base model's name "
                             "there; mlx-lm: its model folder); empty = the first the server lists",
                             flag="served-model")
    request_timeout: float = _opt(600.0, "backend openai: seconds one request may take before it is retried")
    max_retries: int = _opt(8, "backend openai: retries of a request on connection refused, 429, 5xx and timeouts, "
                            "with exponential backoff (0.5 s doubling, at most 30 s apart)")


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
    seed_file: str = _opt("", "seed pool: a JSONL file with one `prompt` (or `instruction`) per line; empty = the "
                          "pool shipped with srlm-lite", flag="seeds")


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
    objective: str = _opt("dpo", "what each iteration trains on its pairs: dpo = the preference loss (`loss`, "
                          "`beta`); sft = LoRA fine-tuning on each pair's chosen answer only (the paper's SFT baseline "
                          "on self-generated data: the same pairs, batches, steps and learning rate; the rejected "
                          "answer is never trained on)", choices=OBJECTIVES, flag="objective")
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
    holdout: float = _opt(0.2, "share of each iteration's pairs held out of training to measure it honestly (TRL's "
                          "eval_ metrics: loss and reward accuracy on pairs the model never trained on); 0 = none")
    checkpoint_every: int = _opt(5, "save the LoRA weights and the optimizer state every this many steps (atomically); "
                                 "a killed `train` resumes from the last one with the same batches; 0 = never")
    hosts: str = _opt("", "train data-parallel with MLX's distributed runtime, launched by mlx.launch on these hosts: "
                      "an mlx.launch hostfile (JSON) or a comma-separated list (127.0.0.1,127.0.0.1 = two processes "
                      "here); every host needs this Python and the run directory at the same path; empty = one "
                      "process", flag="train-hosts")


@dataclass
class EvalConfig:
    judge_pairs: str = _opt("", "after each iteration: `eval judge` of M_t's judge on this labelled-pairs JSONL")
    ifeval_prompts: str = _opt("", "after each iteration: `eval ifeval` of M_t on this IFEval JSONL")
    h2h_prompts: str = _opt("", "after each iteration: `eval h2h` of M_t vs the starting model on these prompts")
    limit: int = _opt(40, "items of each evaluation file used (the first N)", flag="eval-limit")
    baseline: bool = _opt(True, "also evaluate the starting model M0 once, into evals/")


@dataclass
class RewardConfig:
    source: str = _opt("judge", "where each candidate's reward comes from: " + _modes_help(REWARD_SOURCES),
                       choices=SOURCES, flag="reward")
    consistency: bool = _opt(False, "CREAM's consistency regularisation: each pair's DPO loss is label-smoothed by "
                             "1 - C, C = Kendall's tau between this and the previous model's rankings of the same "
                             "candidates, rescaled to [0, 1] (judge and implicit rewards; from the second iteration, "
                             "or the first with --init)", flag="consistency")
    implicit_beta: float = _opt(0.1, "implicit reward: beta of beta * (log pi_t - log pi_(t-1))")
    length_penalty: float = _opt(0.0, "implicit reward: alpha of - alpha * response tokens (DICE's length term)",
                                 flag="length-penalty")
    verify_share: float = _opt(0.75, "verify/mix: share of the generated prompts given verifiable constraints")
    verify_families: str = _opt(",".join(TRAIN_FAMILIES), "verify/mix: IFEval constraint families training may "
                                f"use (comma-separated; known: {', '.join(FAMILIES)}); the default keeps "
                                f"{', '.join(HELD_OUT_FAMILIES)} out, to measure generalisation on IFEval")
    max_constraints: int = _opt(2, "verify/mix: constraints per constrained prompt (1 to this many)")
    tie_break: float = _opt(0.01, "verify: weight of judge/5 added to the share of constraints met")
    max_repetition: float = _opt(0.5, "any source: a candidate whose seq-rep-4 (the share of its word 4-grams "
                                 "that repeat an earlier one) exceeds this is a loop, ranked below every other "
                                 "candidate of its prompt: never chosen, rejected first (a loop can meet a checked "
                                 "constraint by accident); 1 turns it off", flag="max-repetition")
    mix_judge: float = _opt(1.0, "mix: weight of the standardised judge score")
    mix_implicit: float = _opt(1.0, "mix: weight of the standardised implicit reward")
    mix_verify: float = _opt(1.0, "mix: weight of the standardised share of constraints met")
    mix_length: float = _opt(0.0, "mix: weight of the standardised answer length in characters (negative: shorter "
                             "answers preferred, against the judge's and the constraints' pull toward length)")


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
    reward: RewardConfig = field(default_factory=RewardConfig)
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


@dataclass
class EFTTrainConfig:
    """`srlm-lite eft train`: the judge taught at scale, loss on the score digit only, the rubric prefix cached."""

    learning_rate: float = _opt(1e-4, "Adam learning rate of the LoRA weights")
    epochs: int = _opt(1, "passes over the examples")
    batch_size: int = _opt(8, "examples per optimizer step (batched by length, so little padding)")
    lora_rank: int = _opt(8, "LoRA rank")
    lora_scale: float = _opt(20.0, "LoRA scale (mlx-lm convention)")
    lora_layers: int = _opt(8, "transformer blocks given LoRA, counted from the top (-1 = all); the blocks below "
                               "need no backward pass")
    refresh_every: int = _opt(8, "optimizer steps between recomputations of the rubric prefix's KV cache under the "
                                 "current LoRA (held constant in between, no gradient through it); 0 = exact "
                                 "training: the whole prompt, every step, gradients through it")
    max_length: int = _opt(1024, "token limit of a judge prompt (longer ones are skipped)")
    checkpoint_every: int = _opt(64, "save the LoRA weights and Adam's state every this many steps, rounded up to a "
                                     "multiple of refresh_every (so a resumed run is the run it continues); a killed "
                                     "`eft train` run again with the same --out and settings resumes; 0 = never")
    seed: int = _opt(0, "shuffling and LoRA initialisation seed")


class ConfigError(InputError):
    """A config file or override is not valid TOML, names an unknown key, or gives a value of the wrong type or out
    of its range; the message names the key (and the nearest known one) or the line."""


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
        config = from_dict(read_toml(path), config)
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


def _at_least(n):
    return f">= {n}", lambda v: v >= n


def _above(n):
    return f"> {n}", lambda v: v > n


def _within(low, high):
    return f"in [{low}, {high}]", lambda v: low <= v <= high


_TEMPERATURE = _within(0, 2)
_TOP_P = ("in (0, 1]", lambda v: 0 < v <= 1)
# (dotted key, (what the value must be, test)[, why]): checked by `validate` on every config, from a file or flags
RANGES = (
    ("iterations", _at_least(1)), ("model.n_ctx", _at_least(512)), ("model.n_threads", _at_least(0)),
    ("model.n_batch", _at_least(1)),
    ("instructions.num_prompts", _at_least(1)), ("instructions.max_attempts", _at_least(0)),
    ("instructions.seed_shots", _at_least(0)), ("instructions.generated_shots", _at_least(0)),
    ("instructions.temperature", _TEMPERATURE), ("instructions.top_p", _TOP_P),
    ("instructions.max_tokens", _at_least(1)), ("instructions.rouge_threshold", _within(0, 1)),
    ("instructions.min_words", _at_least(0)), ("instructions.max_words", _at_least(1)),
    ("responses.samples", _at_least(2), "a pair needs two candidates"), ("responses.temperature", _TEMPERATURE),
    ("responses.top_p", _TOP_P), ("responses.max_tokens", _at_least(1)),
    ("judge.judge_samples", _at_least(1)), ("judge.temperature", _TEMPERATURE), ("judge.top_p", _TOP_P),
    ("judge.max_tokens", _at_least(1)), ("judge.min_digit_mass", _within(0, 1)),
    ("pairs.min_score_gap", _at_least(0)), ("pairs.tie_tolerance", _at_least(0)),
    ("train.beta", _above(0)), ("train.learning_rate", _above(0)), ("train.epochs", _at_least(1)),
    ("train.batch_size", _at_least(1)), ("train.lora_rank", _at_least(1)), ("train.lora_scale", _above(0)),
    ("train.lora_layers", ("-1 (all blocks) or >= 1", lambda v: v == -1 or v >= 1)),
    ("train.max_length", _at_least(16)), ("train.rpo_alpha", _at_least(0)), ("train.checkpoint_every", _at_least(0)),
    ("eval.limit", _at_least(1)), ("model.concurrency", _at_least(1)), ("model.max_retries", _at_least(0)),
    ("model.request_timeout", _above(0)),
    ("reward.implicit_beta", _above(0)), ("reward.length_penalty", _at_least(0)),
    ("reward.verify_share", _within(0, 1)), ("reward.max_constraints", _at_least(1)),
    ("reward.tie_break", _within(0, 1)), ("train.holdout", _within(0, 0.5)),
)


def validate(config: RunConfig) -> None:
    """Every setting in its range (RANGES), every float finite, every choice one of its choices."""
    values = {dotted: value for dotted, _, value in walk(config)}
    for dotted, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{dotted} must be a finite number, got {value!r}")
    for key, (must, ok), *why in RANGES:
        if key in values and not ok(values[key]):
            note = f" ({why[0]})" if why else ""
            raise ConfigError(f"{key} must be {must}{note}, got {values[key]!r}")
    if values.get("instructions.min_words", 0) > values.get("instructions.max_words", math.inf):
        raise ConfigError("instructions.min_words must be <= instructions.max_words")
    if values.get("instructions.seed_shots", 1) + values.get("instructions.generated_shots", 0) < 1:
        raise ConfigError("instructions.seed_shots + instructions.generated_shots must be >= 1")
    if "reward.verify_families" in values:
        try:
            parse_families(values["reward.verify_families"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
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


def _field_value(obj, key: str, section: str = ""):
    names = [f.name for f in dataclasses.fields(obj)]
    if key not in names:
        where = f" in [{section}]" if section else ""
        raise ConfigError(f"unknown config key '{key}'{where}{_suggestion(key, names, section)}")
    return getattr(obj, key)


def _suggestion(key: str, names: list[str], section: str) -> str:
    """"; did you mean 'X'?": the nearest key of the same section, else the nearest setting anywhere."""
    near = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    if near:
        return f"; did you mean '{near[0]}'?"
    everywhere = [dotted for dotted, _, _ in walk(RunConfig()) if "." in dotted]
    near = difflib.get_close_matches(str(key), {d.rsplit(".", 1)[1] for d in everywhere}, n=1, cutoff=0.75)
    if near:
        options = [d for d in everywhere if d.rsplit(".", 1)[1] == near[0]]
        return f"; did you mean {' or '.join(repr(d) for d in options)} (in its [section])?"
    return f" (known: {', '.join(sorted(names))})"


def _set(obj, key: str, value: Any, label: str) -> None:
    current = _field_value(obj, key, label.rpartition(".")[0])
    if dataclasses.is_dataclass(current):
        raise ConfigError(f"'{label}' is a section; give it as a [{label}] table")
    expected = type(current)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"'{label}' must be {expected.__name__}, got {_short(value)}")
    setattr(obj, key, value)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if _is_control(c) else c) for c in value) + '"'
    raise TypeError(f"cannot write {value!r} as TOML")


_TOML_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _is_control(char: str) -> bool:
    """Characters a TOML basic string may not hold as they are (written as \\uXXXX)."""
    return ord(char) < 0x20 or ord(char) == 0x7F


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as nested dicts; ConfigError (with the line) for a file that cannot be read or is not TOML."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)", str(exc))
        if not found:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        reason = str(exc).replace(found.group(0), "")
        raise ConfigError(f"{path}:{found.group(1)}: not valid TOML ({reason}, column {found.group(2)})") from exc


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
