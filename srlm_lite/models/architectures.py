"""The model architectures srlm-lite runs, as one table: how a GGUF of each maps onto mlx-lm's model class.

For each architecture: the mlx-lm module, the GGUF tensor names of a block and where they go, how llama.cpp's
converter changed the tensors (llama: Q/K rows permuted for its rope; gemma3: 1 added to every norm weight), the
linear layers a LoRA adapts, and the mlx-lm ModelArgs read from the GGUF metadata. Adding an architecture touches
this table only (and the tests' tiny-model builder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

_ATTENTION = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj"}
_MLP = {"ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
_NORMS = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm"}
GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
LLAMA_LORA_KEYS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@dataclass(frozen=True)
class Architecture:
    name: str  # GGUF `general.architecture`
    module: str  # mlx-lm module holding Model and ModelArgs
    block_names: dict[str, str]  # GGUF block tensor part -> mlx-lm module path inside model.layers.N
    args: Callable[[dict], dict]  # ModelArgs keyword arguments from `gguf_meta` (see below)
    qk_permuted: bool = False  # llama.cpp's converter permuted the Q/K rows (rope on interleaved pairs)
    norm_shift: float = 0.0  # llama.cpp's converter added this to every norm weight
    lora_keys: tuple[str, ...] = LLAMA_LORA_KEYS
    hf_model_type: str = ""  # config.json model_type of the Hugging Face layout
    extra: dict = field(default_factory=dict)

    def gguf_lora_name(self, key: str) -> str:
        """The GGUF tensor part a LoRA on mlx-lm module `key` adapts (e.g. self_attn.q_proj -> attn_q)."""
        for part, target in self.block_names.items():
            if target == key:
                return part
        raise ValueError(f"{self.name}: no GGUF tensor for LoRA on {key}")


def _common(m: dict) -> dict:
    return {"hidden_size": m["embedding_length"], "num_hidden_layers": m["block_count"],
            "intermediate_size": m["feed_forward_length"], "num_attention_heads": m["head_count"],
            "num_key_value_heads": m["head_count_kv"], "rms_norm_eps": m["rms_eps"], "vocab_size": m["vocab_size"],
            "max_position_embeddings": m["context_length"], "rope_theta": m["rope_theta"]}


def _llama(m: dict) -> dict:
    return {**_common(m), "model_type": "llama", "head_dim": m["key_length"], "rope_traditional": True,
            "tie_word_embeddings": m["tied"], "attention_bias": m["attention_bias"], "mlp_bias": m["mlp_bias"]}


def _qwen2(m: dict) -> dict:
    return {**_common(m), "model_type": "qwen2", "tie_word_embeddings": m["tied"]}


def _qwen3(m: dict) -> dict:
    return {**_common(m), "model_type": "qwen3", "head_dim": m["key_length"], "tie_word_embeddings": m["tied"]}


def _gemma3(m: dict) -> dict:
    # llama.cpp's gemma3: local (sliding) layers use rope base 10000, every 6th layer is global, and the query
    # scale is 1/sqrt(head_dim) (for all sizes but 27B, which the 27B's own GGUF metadata does not tell apart)
    return {**_common(m), "model_type": "gemma3_text", "head_dim": m["key_length"], "rope_local_base_freq": 10000.0,
            "query_pre_attn_scalar": m["key_length"], "sliding_window": m.get("sliding_window") or 512,
            "sliding_window_pattern": 6}


def _phi3(m: dict) -> dict:
    return {**_common(m), "model_type": "phi3", "tie_word_embeddings": m["tied"],
            "original_max_position_embeddings": m["context_length"]}


ARCHITECTURES: dict[str, Architecture] = {
    "llama": Architecture("llama", "mlx_lm.models.llama", {**_ATTENTION, **_MLP, **_NORMS}, _llama,
                          qk_permuted=True, hf_model_type="llama"),
    "qwen2": Architecture("qwen2", "mlx_lm.models.qwen2", {**_ATTENTION, **_MLP, **_NORMS}, _qwen2,
                          hf_model_type="qwen2"),
    "qwen3": Architecture("qwen3", "mlx_lm.models.qwen3",
                          {**_ATTENTION, **_MLP, **_NORMS, "attn_q_norm": "self_attn.q_norm",
                           "attn_k_norm": "self_attn.k_norm"}, _qwen3, hf_model_type="qwen3"),
    "gemma3": Architecture("gemma3", "mlx_lm.models.gemma3_text",
                           {**_ATTENTION, **_MLP, "attn_norm": "input_layernorm", "attn_q_norm": "self_attn.q_norm",
                            "attn_k_norm": "self_attn.k_norm", "post_attention_norm": "post_attention_layernorm",
                            "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm"},
                           _gemma3, norm_shift=1.0, hf_model_type="gemma3_text"),
    "phi3": Architecture("phi3", "mlx_lm.models.phi3",
                         {"attn_qkv": "self_attn.qkv_proj", "attn_output": "self_attn.o_proj",
                          "ffn_up": "mlp.gate_up_proj", "ffn_down": "mlp.down_proj", **_NORMS}, _phi3,
                         lora_keys=("self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"),
                         hf_model_type="phi3"),
}
SUPPORTED_ARCHITECTURES = tuple(ARCHITECTURES)
HF_MODEL_TYPES = {arch.hf_model_type: arch for arch in ARCHITECTURES.values()}


def architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture '{name}' is not supported; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    return ARCHITECTURES[name]


def permute_qk(weight, n_heads: int):
    """llama.cpp's Q/K row order (rope on interleaved pairs) from the Hugging Face order (rope on halves)."""
    shape = weight.shape
    return weight.reshape(n_heads, 2, shape[0] // n_heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def unpermute_qk(weight, n_heads: int):
    """The Hugging Face Q/K row order from llama.cpp's (the inverse of `permute_qk`)."""
    shape = weight.shape
    return weight.reshape(n_heads, shape[0] // n_heads // 2, 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
