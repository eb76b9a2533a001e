"""ROUGE-L deduplication of generated prompts (Self-Instruct's > 0.7 rule) and the stage-1 filters."""

import pytest

from srlm_lite.config import InstructionsConfig
from srlm_lite.stages.dedup import RougeDeduplicator, rouge_l, rouge_tokens
from srlm_lite.stages.instructions import clean, filter_reason


def test_rouge_l_hand_computed():
    # LCS("the cat sat on the mat", "the cat on the mat") = 5 -> F = 2*5/(6+5)
    assert rouge_l("the cat sat on the mat".split(), "the cat on the mat".split()) == pytest.approx(10 / 11)
    assert rouge_l(["a", "b"], ["c"]) == 0.0
    assert rouge_l([], ["a"]) == 0.0
    assert rouge_tokens("Write a Haiku, about rain!") == ["write", "a", "haiku", "about", "rain"]


def test_deduplicator_threshold():
    dedup = RougeDeduplicator(0.7, ["Write a short poem about the sea."])
    assert dedup.is_duplicate("Write a short poem about the ocean sea.")  # 2*6/(7+8) = 0.8
    assert not dedup.is_duplicate("How do I convert Celsius to Fahrenheit in my head?")
    dedup.add("How do I convert Celsius to Fahrenheit in my head?")
    assert dedup.is_duplicate("how do i convert celsius to fahrenheit in my head")


def test_filters():
    config = InstructionsConfig()
    assert filter_reason("Explain how vaccines train the immune system.", True, config) is None
    assert filter_reason("Explain how vaccines train the immune system.", False, config) == "unfinished"
    assert filter_reason("Hi there", True, config) == "too_short"
    assert filter_reason("word " * 200, True, config) == "too_long"
    assert filter_reason("Describe the image below in three sentences.", True, config) == "blacklisted"
    assert filter_reason("- list three fruits that are red", True, config) == "bad_start"
    assert clean("  Name three red fruits.\n</task>\n<task>") == "Name three red fruits."
