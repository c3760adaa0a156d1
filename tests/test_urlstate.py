"""The dashboard's URL format (docs/api.md, "Dashboard URL"): parsing, explanations, canonical form."""

from __future__ import annotations

from urllib.parse import parse_qs

from headscope.app.urlstate import LINES_MAX_TOKENS, ModelShape, ViewState, parse_query, to_query
from headscope.engine.atlas.layers import POOLINGS  # the API's poolings: the link must name each
from headscope.engine.interventions import ABLATION_MODES
from hypothesis import given
from hypothesis import strategies as st

MODES = tuple(ABLATION_MODES)
MEASURES = ("weights", "norm", "rollout")
LEVELS = ("token", "word")
SHAPE = ModelShape(num_layers=6, num_heads=12, dev_size=1000, modes=MODES, max_text_chars=500)


def test_an_empty_query_is_the_contract_default_view() -> None:
    state, problems = parse_query("", SHAPE)
    assert state == ViewState(ex=0, text=None, pair=None, layer=0, head=0, off=(), mode="zero")
    assert problems == []


def test_a_full_link_opens_exactly_its_view() -> None:
    state, problems = parse_query("?ex=17&layer=3&head=7&off=L5H1,L3H7&mode=uniform", SHAPE)
    assert problems == []
    assert (state.ex, state.layer, state.head, state.mode) == (17, 3, 7, "uniform")
    assert state.off == ((3, 7), (5, 1))


def test_the_canonical_form_sorts_heads_and_omits_an_empty_mask() -> None:
    masked = ViewState(ex=4, layer=2, head=1, off=((5, 1), (3, 7), (3, 7)), mode="mean")
    assert to_query(masked) == "?ex=4&layer=2&head=1&off=L3H7,L5H1&mode=mean"
    assert "off" not in parse_qs(to_query(ViewState()).lstrip("?"))


def test_ex_wins_over_text() -> None:
    state, problems = parse_query("?ex=5&text=hello&pair=world", SHAPE)
    assert (state.ex, state.text, state.pair) == (5, None, None)
    assert problems == []


def test_free_text_and_pair_round_trip_through_the_canonical_query() -> None:
    state, problems = parse_query("?text=it%27s+not+bad%2C+really&pair=a%20%26%20b&layer=1", SHAPE)
    assert problems == []
    assert (state.ex, state.text, state.pair, state.layer) == (None, "it's not bad, really", "a & b", 1)
    assert parse_query(to_query(state), SHAPE) == (state, [])


def test_unknown_and_malformed_heads_are_dropped_and_named_while_valid_ones_stay() -> None:
    state, problems = parse_query("?off=L2H3,L9H1,garbage,L0H12,,l1h1", SHAPE)
    assert state.off == ((1, 1), (2, 3))
    text = " ".join(problems)
    assert "L9H1" in text and "L0H12" in text and "'garbage'" in text
    assert "0..5" in text and "0..11" in text  # the model's real ranges


def test_out_of_range_focus_and_example_fall_back_with_the_limit_named() -> None:
    state, problems = parse_query("?ex=1000&layer=6&head=-1", SHAPE)
    assert (state.ex, state.layer, state.head) == (0, 0, 0)
    assert any("ex=1000" in p and "0..999" in p for p in problems)
    assert any("layer=6" in p and "0..5" in p for p in problems)
    assert any("head=" in p and "0..11" in p for p in problems)


def test_an_invalid_mode_falls_back_to_zero_and_lists_the_modes() -> None:
    state, problems = parse_query("?mode=drop&off=L1H1", SHAPE)
    assert state.mode == "zero" and state.off == ((1, 1),)
    assert len(problems) == 1 and all(mode in problems[0] for mode in MODES)


def test_too_long_or_empty_text_falls_back_to_the_default_example() -> None:
    state, problems = parse_query("?text=" + "a" * 501, SHAPE)
    assert (state.ex, state.text) == (0, None)
    assert "501" in problems[0] and "500" in problems[0]
    state, problems = parse_query("?text=%20%20", SHAPE)
    assert (state.ex, state.text) == (0, None) and "empty" in problems[0]


def test_an_invalid_example_id_with_a_valid_text_uses_the_text() -> None:
    state, problems = parse_query("?ex=abc&text=good+film", SHAPE)
    assert (state.ex, state.text) == (None, "good film")
    assert len(problems) == 1 and "ex=" in problems[0]


def test_unknown_repeated_and_orphan_parameters_are_explained() -> None:
    state, problems = parse_query("?layer=2&layer=3&foo=1&pair=alone", SHAPE)
    assert state.layer == 2
    joined = " ".join(problems)
    assert "'foo'" in joined and "more than once" in joined and "pair ignored" in joined


def test_measure_and_level_are_in_the_link_only_when_not_the_default() -> None:
    state, problems = parse_query("?ex=2&layer=1&head=3&level=word&measure=norm", SHAPE)
    assert problems == [] and (state.measure, state.level) == ("norm", "word")
    assert to_query(state) == "?ex=2&layer=1&head=3&mode=zero&measure=norm&level=word"
    plain = to_query(ViewState(ex=2))
    assert "measure" not in plain and "level" not in plain
    assert parse_query("?measure=weights&level=token", SHAPE) == (ViewState(), [])


def test_an_unknown_measure_or_level_falls_back_and_names_the_allowed_ones() -> None:
    state, problems = parse_query("?measure=gradient&level=sentence&mode=mean", SHAPE)
    assert (state.measure, state.level, state.mode) == ("weights", "token", "mean")
    assert len(problems) == 2
    assert "measure='gradient'" in problems[0] and all(m in problems[0] for m in MEASURES)
    assert "level='sentence'" in problems[1] and "token, word" in problems[1]


def test_the_layers_pages_state_and_pooling_are_in_the_link() -> None:
    """The Layers page's scatter: state 0 (embeddings) to num_layers (one more than the layers), pooling."""
    state, problems = parse_query(f"?off=L1H0&state={SHAPE.num_layers}&pooling=mean", SHAPE)
    assert problems == [] and (state.state, state.pooling, state.off) == (SHAPE.num_layers, "mean", ((1, 0),))
    assert to_query(state) == f"?ex=0&layer=0&head=0&off=L1H0&mode=zero&state={SHAPE.num_layers}&pooling=mean"
    assert "state" not in to_query(ViewState()) and "pooling" not in to_query(ViewState())
    state, problems = parse_query(f"?state={SHAPE.num_layers + 1}&pooling=max", SHAPE)
    assert (state.state, state.pooling) == (None, "first")
    joined = " ".join(problems)
    assert f"state={SHAPE.num_layers + 1} is out of range" in joined and f"0..{SHAPE.num_layers}" in joined
    assert "pooling='max'" in joined and "first, mean" in joined


def test_zoom_and_lines_window_are_token_ranges_in_the_link() -> None:
    """The heatmap's zoom (queries, then keys; one range when they are the same) and the lines view's window."""
    state, problems = parse_query("?ex=2&zoom=10-30&lines=12-20", SHAPE)
    assert problems == [] and (state.zoom, state.lines) == ((10, 30, 10, 30), (12, 20))
    assert to_query(state) == "?ex=2&layer=0&head=0&mode=zero&zoom=10-30&lines=12-20"
    state, problems = parse_query("?zoom=10-30,0-50", SHAPE)
    assert problems == [] and state.zoom == (10, 30, 0, 50) and to_query(state).endswith("&zoom=10-30,0-50")
    assert parse_query("?zoom=10-30,10-30", SHAPE)[0].zoom == (10, 30, 10, 30)
    assert "zoom" not in to_query(ViewState()) and "lines" not in to_query(ViewState())


def test_bad_zoom_and_lines_fall_back_with_the_limits_named() -> None:
    top = SHAPE.max_tokens - 1
    for bad in ("30-10", "abc", f"0-{top + 1}", "1-2,3"):
        state, problems = parse_query(f"?zoom={bad}&head=3", SHAPE)
        assert state.zoom is None and state.head == 3 and len(problems) == 1
        assert f"zoom='{bad}' ignored" in problems[0] and f"0..{top}" in problems[0]
    state, problems = parse_query("?lines=9-4", SHAPE)
    assert state.lines is None and "lines='9-4' ignored" in problems[0]
    # a window wider than the lines view can draw legibly falls back (the zoom's tokens), the limit named
    state, problems = parse_query("?lines=100-199&zoom=5-9", SHAPE)
    assert state.lines is None and state.zoom == (5, 9, 5, 9)
    assert "lines=100-199 ignored" in problems[0] and f"at most {LINES_MAX_TOKENS}" in problems[0]


def test_huge_values_are_shortened_in_explanations() -> None:
    _, problems = parse_query("?mode=" + "x" * 5000, SHAPE)
    assert len(problems[0]) < 200


heads = st.tuples(st.integers(0, SHAPE.num_layers - 1), st.integers(0, SHAPE.num_heads - 1))
spans = st.lists(st.integers(0, SHAPE.max_tokens - 1), min_size=2, max_size=2).map(sorted)
zooms = st.one_of(st.none(), st.tuples(spans, spans).map(lambda s: (*s[0], *s[1])),
                  spans.map(lambda s: (*s, *s)))
windows = st.one_of(st.none(), st.tuples(st.integers(0, SHAPE.max_tokens - LINES_MAX_TOKENS),
                                         st.integers(0, LINES_MAX_TOKENS - 1)).map(lambda s: (s[0], s[0] + s[1])))
texts = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=60).filter(str.strip)
STATES = st.one_of(  # every kind of view a link can name (the browser test reuses it)
    st.builds(ViewState, ex=st.integers(0, SHAPE.dev_size - 1), text=st.none(), pair=st.none(),
              layer=st.integers(0, 5), head=st.integers(0, 11), off=st.lists(heads, max_size=8).map(tuple),
              mode=st.sampled_from(MODES), measure=st.sampled_from(MEASURES), level=st.sampled_from(LEVELS),
              state=st.one_of(st.none(), st.integers(0, SHAPE.num_layers)), pooling=st.sampled_from(POOLINGS),
              zoom=zooms, lines=windows),
    st.builds(ViewState, ex=st.none(), text=texts, pair=st.one_of(st.none(), texts),
              layer=st.integers(0, 5), head=st.integers(0, 11), off=st.lists(heads, max_size=8).map(tuple),
              mode=st.sampled_from(MODES), measure=st.sampled_from(MEASURES), level=st.sampled_from(LEVELS),
              state=st.one_of(st.none(), st.integers(0, SHAPE.num_layers)), pooling=st.sampled_from(POOLINGS),
              zoom=zooms, lines=windows),
)


@given(STATES)
def test_every_state_survives_its_own_link(state: ViewState) -> None:
    parsed, problems = parse_query(to_query(state), SHAPE)
    assert problems == []
    assert parsed == ViewState(ex=state.ex, text=state.text, pair=state.pair, layer=state.layer,
                               head=state.head, off=tuple(sorted(set(state.off))), mode=state.mode,
                               measure=state.measure, level=state.level, state=state.state, pooling=state.pooling,
                               zoom=state.zoom, lines=state.lines)
    assert to_query(parsed) == to_query(state)  # canonical: one link per view


@given(st.text(max_size=200))
def test_any_query_parses_to_a_valid_state(query: str) -> None:
    state, _ = parse_query(query, SHAPE)
    assert state.mode in MODES and state.measure in MEASURES and state.level in LEVELS and state.pooling in POOLINGS
    assert state.state is None or 0 <= state.state <= SHAPE.num_layers
    assert 0 <= state.layer < SHAPE.num_layers and 0 <= state.head < SHAPE.num_heads
    assert all(0 <= layer < SHAPE.num_layers and 0 <= head < SHAPE.num_heads for layer, head in state.off)
    assert (state.ex is None) != (state.text is None)
    assert state.ex is None or 0 <= state.ex < SHAPE.dev_size
    assert state.zoom is None or (state.zoom[0] <= state.zoom[1] < SHAPE.max_tokens
                                  and state.zoom[2] <= state.zoom[3] < SHAPE.max_tokens)
    assert state.lines is None or 0 <= state.lines[1] - state.lines[0] < LINES_MAX_TOKENS
