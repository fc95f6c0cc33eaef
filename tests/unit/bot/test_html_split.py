"""Long admin HTML is cut only where every piece still parses (checked with the fake Bot API's strict parser)."""

from __future__ import annotations

from html import escape

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.html_split import fit_lines, split_html
from tests.fakes.telegram import parse_html

_words = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=60).map(escape)
_line = st.one_of(
    _words,
    st.builds(lambda word: f"<b>{word}</b>", _words),
    st.builds(lambda word, link: f'<a href="https://t.me/{link}">{word}</a>', _words, st.text("abc", max_size=5)),
    st.just("&amp;&lt;&gt;" * 30),
    st.just("<b>bold opens here"),  # closed on a later line
    st.just("and closes here</b>"),
    st.builds(lambda n: "x&amp;" * n, st.integers(0, 400)),
)


def balanced(lines: list[str]) -> str:
    text = "\n".join(lines)
    opened = text.count("<b>") - text.count("</b>")
    return text + "</b>" * max(opened, 0) if opened >= 0 else "<b>" * -opened + text


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=80), st.sampled_from([100, 700, 4096]))
def test_every_piece_fits_and_parses_and_nothing_is_lost(lines: list[str], limit: int) -> None:
    text = balanced(lines)
    try:
        visible, _ = parse_html(text)
    except Exception:  # "and closes here</b>" before any opening: not a valid input to begin with
        return
    pieces = split_html(text, limit)
    parsed = [parse_html(piece)[0] for piece in pieces]  # raises on any broken tag or entity
    assert all(len(piece) <= limit for piece in pieces)
    # Nothing visible is lost or reordered. A piece of whitespace alone is not sent (Telegram refuses an
    # empty message), so whitespace is compared as far as it sits between visible characters.
    assert _ink("".join(parsed)) == _ink(visible)


def _ink(text: str) -> str:
    return "".join(text.split())


def test_short_text_is_one_piece_and_lines_are_kept_whole() -> None:
    assert split_html("<b>a</b>\nb &amp; c") == ["<b>a</b>\nb &amp; c"]
    lines = [f"{index}. job &amp; <i>task</i>" for index in range(400)]
    pieces = split_html("\n".join(lines), 1000)
    assert len(pieces) > 1
    assert [line for piece in pieces for line in piece.split("\n")] == lines


def test_a_tag_open_across_a_cut_is_closed_and_reopened() -> None:
    text = '<a href="https://t.me/x">' + "word " * 300 + "</a>"
    pieces = split_html(text, 500)
    assert len(pieces) > 1
    assert all(piece.startswith('<a href="https://t.me/x">') and piece.endswith("</a>") for piece in pieces)


def test_fit_lines_keeps_whole_lines_and_counts_the_rest() -> None:
    lines = [f"{index}. failed — {escape('&' * 60)}" for index in range(23)]
    fitted = fit_lines(lines, 2500)
    assert len(fitted) <= 2500
    kept = fitted.split("\n")
    assert kept[:-1] == lines[: len(kept) - 1] and kept[-1] == f"… +{23 - len(kept) + 1}"
    parse_html(fitted)
    assert fit_lines(["a", "b"], 100) == "a\nb"
