"""One tokenizer and chat template for sampler and trainer: llama.cpp's vocabulary and the GGUF's Jinja template."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .untrusted import neutralize

# Used only when a GGUF carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _raise(message: str):
    raise jinja2.TemplateError(message)


def compile_template(source: str) -> jinja2.Template:
    """Compile a Hugging Face style chat template the way transformers does (trim and lstrip blocks)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(source)


@dataclass
class ChatTokenizer:
    """Tokenizes and templates exactly as the llama.cpp sampler does, so trained tokens are sampled tokens."""

    model_path: Path
    template_source: str
    bos_token: str
    eos_token: str
    eos_token_id: int
    _llama: object

    @classmethod
    def from_gguf(cls, model_path: str | Path, chat_template: str | None = None) -> "ChatTokenizer":
        """llama.cpp's own tokenizer of a GGUF (vocabulary only, cheap); `chat_template` (Jinja source) replaces
        the GGUF's template."""
        from llama_cpp import Llama
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):  # llama.cpp logs a context warning even when verbose=False
            llama = Llama(model_path=str(model_path), vocab_only=True, verbose=False)
        return cls.from_llama(llama, model_path, chat_template)

    @classmethod
    def from_llama(cls, llama, model_path: str | Path, chat_template: str | None = None) -> "ChatTokenizer":
        """Share the vocabulary of an already loaded llama_cpp.Llama (the sampler's own)."""
        meta = llama.metadata
        eos_id = llama.token_eos()
        bos_id = llama.token_bos()
        return cls(
            model_path=Path(model_path),
            template_source=chat_template or meta.get("tokenizer.chat_template") or _fallback_template(llama,
                                                                                                        model_path),
            bos_token=_piece(llama, bos_id),
            eos_token=_piece(llama, eos_id),
            eos_token_id=eos_id,
            _llama=llama,
        )

    @cached_property
    def _template(self) -> jinja2.Template:
        return compile_template(self.template_source)

    @cached_property
    def special_tokens(self) -> tuple[str, ...]:
        """The text of every control token of the vocabulary (<|im_start|>, <|im_end|>, <|endoftext|>, ...)."""
        return special_token_texts(self._llama)

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The conversation in the chat template. Message contents are data: control tokens written in them are
        neutralised first (`untrusted.neutralize`), so a message cannot close its turn or open another."""
        messages = [{**m, "content": neutralize(m["content"], self.special_tokens)}
                    if isinstance(m.get("content"), str) else m for m in messages]
        return self._template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
        )

    def prompt_text(self, prompt: str, system: str | None = None) -> str:
        """The templated text of a single-turn user prompt, ending with the assistant's generation prompt."""
        messages = [{"role": "system", "content": system}] if system else []
        return self.render(messages + [{"role": "user", "content": prompt}], add_generation_prompt=True)

    def encode(self, text: str, special: bool = True, add_bos: bool = True) -> list[int]:
        """Token ids; `special` parses control tokens such as <|im_start|>; BOS only where the GGUF asks for it."""
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def decode(self, ids: list[int]) -> str:
        return self._llama.detokenize(list(ids)).decode("utf-8", errors="replace")

    @cached_property
    def eog_token_ids(self) -> set[int]:
        """Tokens that end a generation (EOS, end-of-turn...)."""
        return eog_token_ids(self._llama) | {self.eos_token_id}

    def sequence(self, prompt: str, response: str, finished: bool = True) -> tuple[list[int], int]:
        """Prompt + response tokens (EOS appended when the response ended on its own) and the prompt length."""
        prompt_ids = self.encode(self.prompt_text(prompt))
        response_ids = self.encode(response, special=False, add_bos=False)
        if finished:
            response_ids.append(self.eos_token_id)
        return prompt_ids + response_ids, len(prompt_ids)


def _fallback_template(llama, model_path) -> str:
    """ChatML for a GGUF without a chat template whose vocabulary has ChatML's control tokens; else a clear error."""
    ids = llama.tokenize(b"<|im_start|>", add_bos=False, special=True)
    if len(ids) == 1:
        return CHATML_TEMPLATE
    raise ValueError(f"{Path(model_path).name} has no chat template (a base model?): give one with --chat-template "
                     f"FILE (a Jinja chat template, as in a tokenizer_config.json)")


def eog_token_ids(llama) -> set[int]:
    """Every end-of-generation token of a llama.cpp vocabulary (EOS, end-of-turn, ...)."""
    import llama_cpp

    vocab = llama._model.vocab
    return {i for i in range(llama.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)}


def read_chat_template(path: str | Path | None) -> str | None:
    """The Jinja source of a chat template file (None without one)."""
    if not path:
        return None
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--chat-template {path}: no such file")
    text = path.read_text(encoding="utf-8")
    compile_template(text)  # a syntax error is reported now, not at the first prompt
    return text


def special_token_texts(vocab) -> tuple[str, ...]:
    """The text of every control token of a tokenizer: a llama.cpp vocabulary's CONTROL and USER_DEFINED tokens, or
    a Hugging Face tokenizer's special and added special tokens (for `HFChatTokenizer`, which shares `render`)."""
    if hasattr(vocab, "all_special_tokens"):  # transformers
        added = getattr(vocab, "added_tokens_decoder", {}) or {}
        texts = set(vocab.all_special_tokens) | {str(t) for t in added.values() if getattr(t, "special", False)}
        return tuple(sorted(texts))
    import llama_cpp

    kinds = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    model_vocab = vocab._model.vocab
    return tuple(sorted({_piece(vocab, i) for i in range(vocab.n_vocab())
                         if llama_cpp.llama_vocab_get_attr(model_vocab, i) & kinds} - {""}))


def _piece(llama, token_id: int) -> str:
    if token_id is None or token_id < 0:
        return ""
    return llama.detokenize([token_id], special=True).decode("utf-8", errors="replace")
