"""An Ollama Modelfile for an exported GGUF: FROM, the chat template in Ollama's Go template syntax, stop tokens.

Ollama does not run Jinja templates; the families our models use are written out here: ChatML (SmolLM2, Qwen),
Gemma's turns, Llama 3's headers. A template of another family gets a Modelfile without TEMPLATE and a comment."""

from __future__ import annotations

CHATML = ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
          '<|im_start|>assistant\n')
GEMMA = ('{{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}{{ .Role }}{{ end }}\n'
         '{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n')
LLAMA3 = ('<|begin_of_text|>{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
          '{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n')
FAMILIES = {  # a marker in the Jinja source -> (Go template, stop tokens)
    "<|im_start|>": (CHATML, ["<|im_end|>", "<|im_start|>"]),
    "<start_of_turn>": (GEMMA, ["<end_of_turn>"]),
    "<|start_header_id|>": (LLAMA3, ["<|eot_id|>"]),
}


def template_family(jinja_source: str) -> tuple[str, list[str]] | None:
    """(Go template, stop tokens) of the chat template's family, or None when it is none we know."""
    for marker, family in FAMILIES.items():
        if marker in jinja_source:
            return family
    return None


def modelfile(gguf: str, jinja_source: str) -> str:
    """The Modelfile text: FROM the GGUF, TEMPLATE and its stop parameters where the family is known."""
    lines = [f"FROM {gguf}"]
    family = template_family(jinja_source)
    if family is None:
        lines.append("# the model's chat template is of a family srlm-lite does not translate to Ollama's Go syntax:")
        lines.append("# add a TEMPLATE line by hand (https://github.com/ollama/ollama/blob/main/docs/modelfile.md)")
    else:
        template, stops = family
        lines.append(f'TEMPLATE """{template}"""')
        lines += [f'PARAMETER stop "{stop}"' for stop in stops]
    return "\n".join(lines) + "\n"
