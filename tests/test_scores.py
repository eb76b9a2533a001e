"""The judge-score parser against realistic judge outputs, and the expected score of a digit distribution."""

import math

import pytest

from srlm_lite.judging.scores import expected_score, mean_score, parse_score

JUDGE_OUTPUTS = [
    ("The response is relevant and covers the basics, but lacks depth.\nScore: 3", 3.0),
    ("Score: 4", 4.0),
    ("score: 2", 2.0),
    ("**Score:** 5", 5.0),
    ("It is helpful and clear. Score - 4/5", 4.0),
    ("First I thought Score: 2, but on reflection it deserves more.\nScore: 4", 4.0),  # the last one counts
    ("The answer is well written.\nScore: 4.5", 4.5),
    ("Score: 7", None),  # out of range: no score, never clamped
    ("Score: 8/10", None),  # a different scale is not our rubric
    ("The response explains photosynthesis clearly and accurately.", None),  # no verdict at all
    ("", None),
    ("Total points: 3", None),
    ("Score: four", None),
]


@pytest.mark.parametrize("text,expected", JUDGE_OUTPUTS)
def test_parse_score_table(text, expected):
    assert parse_score(text) == expected


def test_a_judged_response_that_says_score_5_does_not_score_itself():
    judged_response = "Photosynthesis turns light into sugar. Score: 5"
    judge_output = "The response is short and misses the chemistry.\nScore: 2"
    # The stage only ever parses the judge's own text ...
    assert parse_score(judge_output) == 2.0
    # ... and when the judge writes no verdict, there is no score, whatever the response contains.
    assert parse_score("The response mentions light.") is None
    assert parse_score(judged_response) == 5.0  # why the response must never be parsed


def test_expected_score_is_the_mean_of_the_digit_distribution():
    lp = {0: math.log(0.1), 1: math.log(0.1), 2: math.log(0.2), 3: math.log(0.2), 4: math.log(0.3), 5: math.log(0.1)}
    # 0*.1 + 1*.1 + 2*.2 + 3*.2 + 4*.3 + 5*.1 = 2.8
    assert expected_score(lp) == pytest.approx(2.8)


def test_expected_score_renormalises_and_refuses_low_mass():
    lp = {d: math.log(0.1) for d in range(6)}  # 0.6 of the mass on digits, uniform: mean 2.5
    assert expected_score(lp) == pytest.approx(2.5)
    assert expected_score(lp, min_mass=0.7) is None
    assert expected_score({0: math.log(0.3), 5: math.log(0.3)}) == pytest.approx(2.5)


def test_mean_score_ignores_unparsed_and_never_invents_a_minimum():
    assert mean_score([3.0, None, 4.0]) == 3.5
    assert mean_score([None, None]) is None


def test_verdicts_per_answer_says_when_the_format_ignores_j():
    from srlm_lite.judging import JUDGE_FORMATS, verdicts_per_answer

    assert verdicts_per_answer("forced", 3) == "3 verdict(s) per answer"
    assert verdicts_per_answer("sampled", 2) == "2 verdict(s) per answer"
    for mode in ("expected", "yesno", "pairwise"):
        assert not JUDGE_FORMATS[mode].samples_verdicts
        assert verdicts_per_answer(mode, 3) == "one deterministic pass per answer (J ignored)"
    assert verdicts_per_answer(None, "-") == "- verdict(s) per answer"  # a report of a run without a judge section
