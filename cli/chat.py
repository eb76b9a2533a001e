"""`srlm-lite chat`: talk to any iteration's model of a run (or any GGUF) in the terminal."""

from __future__ import annotations

import sys

import click
from rich.text import Text

from .ui import err, out

HELP = "/reset clears the conversation, /quit leaves (so does Ctrl-D)"


@click.command()
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False),
              help="A run directory: chat with one of its models.")
@click.option("--iteration", type=int,
              help="With --run: k of M_k (0 = the base model). [default: the run's last model]")
@click.option("--model", type=click.Path(exists=True, dir_okay=False),
              help="Any GGUF instead of a run's model. [default: the embedded SmolLM2-135M-Instruct]")
@click.option("--temperature", type=float, default=0.7, show_default=True, help="Sampling temperature (0 = greedy).")
@click.option("--top-p", type=float, default=0.9, show_default=True, help="Nucleus sampling.")
@click.option("--max-tokens", type=int, default=256, show_default=True, help="Token limit of one reply.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first reply (then one per turn).")
def chat(run_dir, iteration, model, temperature, top_p, max_tokens, seed):
    """Chat with M_k of a run in the terminal, keeping the conversation; /reset, /quit."""
    from srlm_lite.tools.gallery import Conversation, load_engine, model_spec, run_models

    if iteration is not None and not run_dir:
        raise click.UsageError("--iteration needs --run DIR")
    if run_dir and model:
        raise click.UsageError("give --run (a run's model) or --model (any GGUF), not both")
    if iteration is not None and iteration < 0:
        raise click.UsageError("--iteration must be >= 0 (0 = the base model)")
    k = None
    if run_dir:
        k = run_models(run_dir)[-1] if iteration is None else iteration
    name = f"M{k}" if k is not None else "model"
    try:
        with err.status(f"loading {name}..."):
            engine = load_engine(run_dir, k, model)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from exc
    spec = model_spec(run_dir, k, model)
    what = f"{name} of {run_dir}" if run_dir else str(spec.base)
    if spec.adapter:
        what += f" (base + {spec.lora_gguf})"
    err.print(f"[bold]srlm-lite chat[/bold] with {what}; {HELP}")
    conversation = Conversation(engine, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
    echo = not sys.stdin.isatty()
    while True:
        try:
            text = out.input(Text("you> ", style="bold cyan"))
        except (EOFError, KeyboardInterrupt):
            out.print()
            break
        if echo:  # piped input is not echoed by a terminal: show it, so the transcript reads as a dialogue
            out.print(text, markup=False, highlight=False, soft_wrap=True)
        text = text.strip()
        if not text:
            continue
        if text in ("/quit", "/exit", "/q"):
            break
        if text == "/reset":
            conversation.reset()
            out.print("[dim](conversation cleared)[/dim]")
            continue
        if text.startswith("/"):
            out.print(f"[dim]{HELP}[/dim]")
            continue
        with err.status("thinking..."):
            reply, dropped = conversation.say(text)
        if dropped:
            out.print(f"[dim](the {dropped} oldest turn(s) no longer fit the context and were forgotten)[/dim]")
        out.print(Text.assemble((f"{name}> ", "bold green"), reply), soft_wrap=True)
