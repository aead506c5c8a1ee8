"""The reasoning parser: with and without an opening <think>, and output cut before </think>."""

from r1tune.model.reasoning import split_reasoning


def test_current_template_output_has_no_opening_tag():
    p = split_reasoning("营收增长，利好。\n</think>\n\npositive")
    assert (p.reasoning, p.answer, p.closed, p.well_formed) == ("营收增长，利好。", "positive", True, True)


def test_opening_tag_is_stripped():
    p = split_reasoning("<think>\nStep 1.\n</think>\n\nThe answer is 42.")
    assert (p.reasoning, p.answer) == ("Step 1.", "The answer is 42.")


def test_output_cut_before_think_close_is_all_reasoning():
    p = split_reasoning("Let me think about the balance sheet and")
    assert (p.reasoning, p.answer, p.closed, p.well_formed) == ("Let me think about the balance sheet and", "", False, False)
    p = split_reasoning("<think>\nhalf a thought")
    assert (p.reasoning, p.answer, p.closed) == ("half a thought", "", False)


def test_without_forced_think_plain_text_is_the_answer():
    p = split_reasoning("positive", started_in_think=False)
    assert (p.reasoning, p.answer, p.closed) == ("", "positive", False)


def test_empty_think_block_and_eos_text():
    p = split_reasoning("\n</think>\n\nneutral<｜end▁of▁sentence｜>")
    assert (p.reasoning, p.answer, p.well_formed) == ("", "neutral", True)


def test_closed_but_no_answer_is_not_well_formed():
    p = split_reasoning("thinking…</think>\n\n")
    assert p.closed and not p.well_formed


def test_only_first_think_close_ends_reasoning():
    p = split_reasoning("r</think>answer mentions </think> literally")
    assert (p.reasoning, p.answer) == ("r", "answer mentions </think> literally")


def test_an_output_that_ends_inside_its_think_block_is_unclosed():
    assert split_reasoning("正面").unclosed and split_reasoning("<think>\n正面", started_in_think=False).unclosed
    assert split_reasoning("").unclosed  # stopped at once: the block the prompt opened never closed
    assert not split_reasoning("\n</think>\n\n正面").unclosed
    assert not split_reasoning("正面", started_in_think=False).unclosed  # no think block at all
