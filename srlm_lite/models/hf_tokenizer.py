"""The tokenizer and chat template of a model folder (Hugging Face / mlx-community layout), with the same interface
as `ChatTokenizer`, so the sampler and the trainer of a folder model see the same tokens."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

from .tokenizer import CHATML_TEMPLATE, ChatTokenizer

END_OF_TURN = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>")


class HFChatTokenizer(ChatTokenizer):
    """A `transformers` tokenizer of a model folder behind ChatTokenizer's methods (`_llama` holds it)."""

    @classmethod
    def from_folder(cls, path: str | Path, chat_template: str | None = None) -> "HFChatTokenizer":
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path))
        template = chat_template or getattr(tok, "chat_template", None) or _fallback(tok, path)
        return cls(model_path=Path(path), template_source=template, bos_token=tok.bos_token or "",
                   eos_token=tok.eos_token or "", eos_token_id=tok.eos_token_id, _llama=tok)

    def encode(self, text: str, special: bool = True, add_bos: bool = True) -> list[int]:
        """Token ids; `special` parses control tokens written in the text; BOS only where the tokenizer adds one."""
        tok = self._llama
        ids = list(tok.encode(text, add_special_tokens=False, split_special_tokens=not special))
        bos = tok.bos_token_id
        if add_bos and bos is not None and getattr(tok, "add_bos_token", False) and ids[:1] != [bos]:
            ids = [bos] + ids
        return ids

    def decode(self, ids: list[int]) -> str:
        return self._llama.decode(list(ids), skip_special_tokens=True)

    @cached_property
    def eog_token_ids(self) -> set[int]:
        """EOS, the generation config's EOS ids, and the end-of-turn tokens the vocabulary has."""
        tok = self._llama
        found = {tok.eos_token_id} if tok.eos_token_id is not None else set()
        config = self.model_path / "generation_config.json"
        if config.is_file():
            eos = json.loads(config.read_text()).get("eos_token_id")
            found |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        vocab = tok.get_vocab()
        found |= {vocab[t] for t in END_OF_TURN if t in vocab}
        return found


def _fallback(tok, path) -> str:
    if "<|im_start|>" in tok.get_vocab():
        return CHATML_TEMPLATE
    raise ValueError(f"{path} has no chat template (a base model?): give one with --chat-template FILE "
                     f"(a Jinja chat template)")
