"""`srlm-lite sft` on the real embedded model: IFT + EFT examples -> an adapter llama.cpp serves, usable by
`iterate --init`. Marked `real`."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.real, pytest.mark.slow]

SEED_TASKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "self_instruct" / "seed_tasks.jsonl"


def test_sft_trains_exports_and_serves(tmp_path, real_model_path):
    if not SEED_TASKS.exists():
        pytest.skip("../shared/data is not beside the project")
    rows = [json.loads(line) for line in SEED_TASKS.read_text().splitlines()[:8]]
    ift = tmp_path / "ift.jsonl"
    ift.write_text("".join(json.dumps({"instruction": r["instruction"], "output": r["instances"][0]["output"]}) + "\n"
                           for r in rows if r["instances"][0]["output"].strip()))
    eft = tmp_path / "eft.jsonl"
    eft.write_text(json.dumps({"prompt": "Rate this answer to 'What is 2+2?': 4", "response": "Correct.\nScore: 5"})
                   + "\n")
    done = subprocess.run([sys.executable, "-m", "srlm_lite", "sft", "--ift", str(ift), "--eft", str(eft), "--out",
                           str(tmp_path / "m1"), "--epochs", "2", "--json"], capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["by_source"]["eft"] == 1 and summary["loss_end"] < summary["loss_start"]
    adapter = tmp_path / "m1" / "adapter"
    assert (adapter / "adapters.safetensors").exists() and (adapter / "adapter.gguf").exists()
    assert len((tmp_path / "m1" / "sft_log.jsonl").read_text().splitlines()) == summary["steps"]

    from srlm_lite.config import load
    from srlm_lite.engines import EngineOptions, open_engine
    from srlm_lite.runs import ModelSpec
    from srlm_lite.runs import start_adapter

    assert start_adapter(load(None, {"init": str(tmp_path / "m1")})) == adapter
    tuned = open_engine(ModelSpec(real_model_path, adapter), EngineOptions(batched=False))
    base = open_engine(ModelSpec(real_model_path), EngineOptions(batched=False))
    prompt = tuned.chat_prompt(rows[0]["instruction"])
    first = tuned.encode_text(rows[0]["instances"][0]["output"])[0]
    token = tuned.tokenizer.decode([first])
    # the fine-tuned model puts more probability on its training answer's first token than the base does
    assert tuned.next_token_logprobs(prompt, [token])[token] > base.next_token_logprobs(prompt, [token])[token]
