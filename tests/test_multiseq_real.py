"""Batched sampling on the real model: N candidates decoded together are N independent seeded draws from the
same distribution the sequential path draws from (same sampler chain, same logits up to llama.cpp's float noise).

llama.cpp's logits depend slightly on how tokens are batched (the same prompt evaluated in one chunk or token by
token differs by up to ~0.5 nats on some tokens), so candidates are compared where both paths compute the very same
logits: the first token after a prompt evaluated whole, and greedy decoding (argmax, robust to the noise).
"""

from pathlib import Path

import pytest

from srlm_lite.engines.llama_cpp import LlamaCppEngine

pytestmark = pytest.mark.real


def _fresh(path, batched=True):
    return LlamaCppEngine(path, batched=batched)


def test_greedy_batch_equals_sequential_greedy(real_model_path):
    # any mistake in positions, sequence ids or the shared prompt cells changes greedy continuations
    engine = _fresh(real_model_path)
    prompt = engine.chat_prompt("Give me three tips for learning to juggle.")
    sequential = _fresh(real_model_path, batched=False).complete(prompt, max_tokens=40, temperature=0.0, top_p=1.0,
                                                                 seed=0)
    batched = engine.complete_n(prompt, seeds=[1, 2, 3, 4], max_tokens=40, temperature=0.0, top_p=1.0)
    assert all(b.text == sequential.text and b.n_tokens == sequential.n_tokens for b in batched)


def test_each_candidate_draws_with_its_own_seed(real_model_path):
    engine = _fresh(real_model_path)
    prompt = engine.chat_prompt("Write one word.")
    seeds = list(range(100, 116))
    batched = engine.complete_n(prompt, seeds=seeds, max_tokens=1, temperature=1.0, top_p=1.0)
    # the first token comes from the same prompt logits and the same seeded chain as a sequential draw
    sequential = [_fresh(real_model_path, batched=False).complete(prompt, max_tokens=1, temperature=1.0, top_p=1.0,
                                                                  seed=s) for s in seeds]
    assert [b.text for b in batched] == [s.text for s in sequential]
    assert len({b.text for b in batched}) > 3  # sixteen draws, not one copied


def test_batches_are_reproducible_and_candidates_differ(real_model_path):
    prompt_text = "Give me three tips for learning to juggle."
    runs = []
    for _ in range(2):
        engine = _fresh(real_model_path)
        runs.append([o.text for o in engine.complete_n(engine.chat_prompt(prompt_text), seeds=[11, 22, 33, 44],
                                                       max_tokens=24, temperature=0.7, top_p=0.9)])
    assert runs[0] == runs[1] and len(set(runs[0])) > 1


def test_stop_strings_and_a_clean_cache_after_a_batch(real_model_path):
    engine = _fresh(real_model_path)
    prompt = engine.chat_prompt("Describe the planet Jupiter in two sentences.")
    free = engine.complete_n(prompt, seeds=[5, 6], max_tokens=40, temperature=0.0, top_p=1.0)[0].text
    stop = " " + free.split()[4]  # the fifth word of the greedy answer: the batch must stop just before it
    outs = engine.complete_n(prompt, seeds=[5, 6], max_tokens=40, temperature=0.0, top_p=1.0, stop=[stop])
    assert all(o.text == free[:free.index(stop)] and o.finish_reason == "stop" and o.text for o in outs)
    # after a batch, the single-sequence path still sees only its own prompt
    other = engine.chat_prompt("Name the largest planet.")
    after = engine.complete(other, max_tokens=20, temperature=0.0, top_p=1.0, seed=0).text
    assert after == _fresh(real_model_path, batched=False).complete(other, max_tokens=20, temperature=0.0, top_p=1.0,
                                                                    seed=0).text


def test_several_prompts_decoded_together_follow_each_prompt(real_model_path):
    # the candidates of several prompts in one batch: each prompt's cells (its tail after the shared chat prefix),
    # positions and sequence ids must be its own. Rows of one batch differ by llama.cpp's float noise (greedy can
    # flip at near-ties), so each greedy token is checked against the model run on that sequence alone: it must be
    # the argmax there up to the noise. Attending to another prompt's cells or a wrong position fails this.
    engine = _fresh(real_model_path)
    texts = ["Give me three tips for learning to juggle.", "Name two rivers in Europe.",
             "Explain what a prime number is in one sentence."]
    together = engine.complete_many([(engine.chat_prompt(t), [1, 2, 3]) for t in texts], max_tokens=24,
                                    temperature=0.0, top_p=1.0)
    alone = _fresh(real_model_path, batched=False)
    gaps = []
    for text, group in zip(texts, together):
        prompt = alone.encode(alone.chat_prompt(text))
        for out in group:
            continuation = alone.encode_text(out.text)
            assert len(continuation) == out.n_tokens == 24
            for i, token in enumerate(continuation):
                logprobs = alone._last_logprobs(prompt + continuation[:i])
                gaps.append(float(logprobs.max() - logprobs[token]))
    assert max(gaps) < 0.5 and sorted(gaps)[len(gaps) // 2] == 0.0
    # and the single-sequence path still sees only its own prompt afterwards
    expected = alone.complete(alone.chat_prompt(texts[1]), max_tokens=24, temperature=0.0, top_p=1.0, seed=0).text
    assert engine.complete(engine.chat_prompt(texts[1]), max_tokens=24, temperature=0.0, top_p=1.0,
                           seed=0).text == expected


def test_packing_fits_sequences_and_context():
    from srlm_lite.engines.llama_cpp import pack_units

    units = [(r, [0] * 100, [1, 2, 3, 4]) for r in range(6)]
    groups = pack_units(units, 16, 4096, 128)
    assert [[u[0] for u in g] for g in groups] == [[0, 1, 2, 3], [4, 5]]
    groups = pack_units(units, 16, 2048, 128)  # 612 cells a prompt: three fit 2048
    assert [[u[0] for u in g] for g in groups] == [[0, 1, 2], [3, 4, 5]]


def test_ifeval_answers_batched_equal_one_by_one(real_model_path):
    # eval ifeval answers PROMPTS_PER_BATCH prompts together; greedy, so each answer is the one-by-one answer
    from srlm_lite.evals.ifeval import evaluate_ifeval, load_ifeval
    prompts = Path(__file__).resolve().parents[2] / "shared" / "data" / "ifeval" / "dev.jsonl"
    if not prompts.exists():
        pytest.skip("../shared/data is not beside the project")
    records = load_ifeval(prompts, 8)
    together = evaluate_ifeval(_fresh(real_model_path), records, max_tokens=48)
    alone = evaluate_ifeval(_fresh(real_model_path, batched=False), records, max_tokens=48)
    assert [i["response"] for i in together["items"]] == [i["response"] for i in alone["items"]]
    assert {k: together[k] for k in ("prompt_loose", "inst_loose")} == {k: alone[k] for k in ("prompt_loose", "inst_loose")}
