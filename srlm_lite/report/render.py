"""The report as a document: a list of blocks rendered both as Markdown and as self-contained HTML."""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path


def fmt(value, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "%":
        return f"{value:.0%}"
    if kind.startswith("."):
        return format(value, kind + "f")
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


class Doc:
    """A report as a list of blocks, rendered both as Markdown and as self-contained HTML."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, headers: list[str], rows: list[list]):
        self.blocks.append(("table", headers, [[str(c) for c in row] for row in rows]))

    def image(self, path: Path, alt: str, caption: str = ""):
        self.blocks.append(("img", path, alt, caption))

    def gallery(self, prompt: str, answers: list[tuple[str, str, str]]):
        self.blocks.append(("gallery", prompt, answers))

    def details(self, summary: str, items: list[tuple[str, str]]):
        self.blocks.append(("details", summary, items))

    def markdown(self) -> str:
        return "\n\n".join(_MARKDOWN[block[0]](*block[1:]) for block in self.blocks) + "\n"

    def html(self, title: str) -> str:
        body = [_HTML[block[0]](*block[1:]) for block in self.blocks]
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body><main>\n"
                + "\n".join(body) + "\n</main></body></html>\n")


# ---------------------------------------------------------------- Markdown, one function per block kind

def _md_quote(text: str) -> str:
    return "\n".join("> " + _md_text(line) for line in (text.strip() or "(empty)").splitlines())


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    cell = lambda s: _md_text(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return "\n".join(["| " + " | ".join(map(cell, headers)) + " |", "|" + "---|" * len(headers)]
                     + ["| " + " | ".join(map(cell, row)) + " |" for row in rows])


def _md_gallery(prompt: str, answers: list[tuple[str, str, str]]) -> str:
    lines = [f"**Prompt:** {_md_text(prompt)}"]
    lines += [f"**{model}** {note}\n\n{_md_quote(text)}" for model, text, note in answers]
    return "\n\n".join(lines)


def _md_details(summary: str, items: list[tuple[str, str]]) -> str:
    lines = [f"**{_md_text(summary)}**"] + [f"*{title}*\n\n{_md_quote(text)}" for title, text in items]
    return "\n\n".join(lines)


_MARKDOWN = {
    "h": lambda level, text: "#" * level + " " + text,
    "p": lambda text: text,
    "table": _md_table,
    "img": lambda path, alt, caption: f"![{alt}]({Path(path).name})" + (f"\n\n*{caption}*" if caption else ""),
    "gallery": _md_gallery,
    "details": _md_details,
}


# ---------------------------------------------------------------- HTML, one function per block kind

def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{'' if _NUMERIC.match(c) else ' class=t'}>{e(c)}</td>" for c in row)
                   + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _html_image(path: Path, alt: str, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    figcaption = f"<figcaption>{_inline(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">{figcaption}</figure>'


def _html_gallery(prompt: str, answers: list[tuple[str, str, str]]) -> str:
    e = html.escape
    cards = "".join(f'<div class="card"><div class="model">{e(model)} <span class="note">{e(note)}'
                    f'</span></div><div class="text">{e(text.strip()) or "<i>(empty)</i>"}</div></div>'
                    for model, text, note in answers)
    return f'<div class="prompt"><b>Prompt:</b> {e(prompt)}</div><div class="cards">{cards}</div>'


def _html_details(summary: str, items: list[tuple[str, str]]) -> str:
    e = html.escape
    cards = "".join(f'<div class="card"><div class="model">{e(t)}</div><div class="text">{e(x.strip())}</div></div>'
                    for t, x in items)
    return f'<details open><summary>{e(summary)}</summary><div class="cards">{cards}</div></details>'


_HTML = {
    "h": lambda level, text: f"<h{level}>{html.escape(text)}</h{level}>",
    "p": lambda text: f"<p>{_inline(text)}</p>",
    "table": _html_table,
    "img": _html_image,
    "gallery": _html_gallery,
    "details": _html_details,
}


_NUMERIC = re.compile(r"^[-+]?[\d.,]+%?( -> [-+]?[\d.,]+%?)?$|^-$|^\d+/\d+$")


def _md_text(text: str) -> str:
    """Model-written text shown literally in Markdown: no raw HTML tags."""
    return text.replace("<", "&lt;")


def _inline(text: str) -> str:
    """Escape, then the two bits of Markdown the report's paragraphs use: **bold** and `code`."""
    parts = html.escape(text).split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<b>{b}</b>" if j % 2 else b for j, b in enumerate(bold)))
    return "".join(out)


CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#222;background:#fafafa;
margin:0;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:1.6em;margin:0.2em 0 0.4em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;
padding-bottom:4px}h3{font-size:1.05em;margin-top:1.3em}
p{margin:0.5em 0}code{background:#f1f1f1;padding:1px 4px;border-radius:3px;font-size:0.92em}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:0.86em;margin:0.6em 0}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f3f3f3;text-align:left;white-space:normal;vertical-align:bottom}
td:first-child,td.t{text-align:left}td.t{white-space:normal;min-width:6em}
figure{margin:0.8em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:0.86em;color:#555;margin-top:2px}
.prompt{margin:1em 0 0.4em;padding:6px 10px;background:#eef3fb;border-left:3px solid #4575b4}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px;background:#fcfcfc}
.card .model{font-weight:bold;margin-bottom:4px}.card .note{font-weight:normal;color:#777;font-size:0.85em}
.card .text{white-space:pre-wrap;font-size:0.88em;max-height:24em;overflow-y:auto}
details{margin:0.6em 0}summary{cursor:pointer;font-weight:bold}
"""
