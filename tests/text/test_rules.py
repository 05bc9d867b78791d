from deepfit.text.rules import (
    BOS,
    CASED_POST_RULES,
    DEFAULT_POST_RULES,
    DEFAULT_PRE_RULES,
    EOS,
    SPECIAL_TOKENS,
    add_bos_eos,
    apply_rules,
    deal_caps,
    fix_html,
    mark_maj,
    replace_all_caps,
    replace_rep,
    replace_wrep,
    rm_useless_spaces,
    spec_add_spaces,
    sub_br,
)


def test_special_tokens_order():
    assert SPECIAL_TOKENS == ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]


def test_replace_rep():
    assert replace_rep("cccc") == " xxrep 4 c "
    assert replace_rep("ccc") == "ccc"  # three is not a repetition
    assert replace_rep("wow!!!!!!") == "wow xxrep 6 ! "
    assert replace_rep("a    b") == "a    b"  # spaces are left to rm_useless_spaces


def test_replace_wrep():
    assert replace_wrep("word word word word word ") == " xxwrep 5 word "
    assert replace_wrep("go go go") == "go go go"
    assert replace_wrep("I said no no no no to him") == "I said  xxwrep 4 no to him"  # spaces collapsed later
    assert rm_useless_spaces(replace_wrep("I said no no no no to him")) == "I said xxwrep 4 no to him"
    assert replace_wrep("no no no nono") == "no no no nono"  # whole words only


def test_fix_html():
    assert fix_html("Tom &amp; Jerry") == "Tom & Jerry"
    assert fix_html("it#39;s quot;fine quot;") == "it's \"fine \""  # entities that lost their '&'
    assert fix_html("a &lt;b&gt; &#36;5") == "a <b> $5"
    assert fix_html("x&nbsp;y") == "x y"
    assert fix_html("line\\nnext <unk>") == "line\nnext xxunk"
    assert fix_html("state @-@ of @-@ the @-@ art") == "state-of-the-art"


def test_sub_br_spaces():
    assert sub_br("one<br />two<BR>three<br/>") == "one\ntwo\nthree\n"
    assert spec_add_spaces("a/b #tag") == "a / b  # tag"
    assert rm_useless_spaces("a   b  c\n\nd") == "a b c\n\nd"


def test_caps_rules_notes_examples():
    # file 004's own examples and printed results
    assert replace_all_caps(["I", "AM", "SHOUTING"]) == ["I", "xxup", "am", "xxup", "shouting"]
    assert deal_caps(["My", "name", "is", "Jeremy"]) == ["xxmaj", "my", "name", "is", "xxmaj", "jeremy"]
    assert add_bos_eos(["a"]) == [BOS, "a", EOS]


def test_deal_caps_lowercases_every_token_and_drops_empty_ones():
    assert deal_caps(["McDonald", "A", "iPhone", "I", "", "ok"]) == ["mcdonald", "a", "iphone", "i", "ok"]
    # all-caps words were marked first, so both spellings of a word share one vocabulary entry
    toks = apply_rules(["I", "said", "I", "SAID", "Said"], DEFAULT_POST_RULES)
    assert toks == [BOS, "i", "said", "i", "xxup", "said", "xxmaj", "said", EOS]
    assert all(t == t.lower() for t in toks)


def test_old_cased_rules_still_reachable():
    assert mark_maj(["McDonald", "A", "Hello"]) == ["McDonald", "A", "xxmaj", "hello"]
    assert apply_rules(["I", "AM", "McDonald"], CASED_POST_RULES) == [BOS, "I", "xxup", "am", "McDonald", EOS]


def test_rule_lists_are_plain_and_changeable():
    pre = [r for r in DEFAULT_PRE_RULES if r is not replace_rep]
    assert apply_rules("<br />cccc  x", pre) == "\ncccc x"
    assert apply_rules("<br />cccc  x", DEFAULT_PRE_RULES) == "\n xxrep 4 c x"
    assert apply_rules(["Hi", "YOU"], DEFAULT_POST_RULES) == [BOS, "xxmaj", "hi", "xxup", "you", EOS]
