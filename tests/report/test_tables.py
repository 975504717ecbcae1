"""report.tables: ``fmt`` and Markdown/HTML rendering against expected text written out by hand."""

import pytest

from prunekit.report import Table, fmt


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "–"),
        (True, "yes"),
        (False, "no"),
        (0, "0"),
        (-1234, "-1,234"),
        (1234567, "1,234,567"),
        (0.123456, "0.1235"),
        (98.76, "98.76"),
        (3.0, "3"),
        (2.5e-05, "2.5e-05"),
        (12345.6, "1.235e+04"),  # four significant digits, whatever the magnitude
        (float("nan"), "–"),
        (float("inf"), "∞"),
        ("conv1.weight", "conv1.weight"),
    ],
)
def test_fmt(value, text) -> None:
    assert fmt(value) == text


def test_markdown_table_exact_text() -> None:
    table = Table("Dense vs pruned", ["metric", "dense", "pruned"],
                  [["parameters", 266610, 26661], ["test accuracy (%)", 98.1, 97.85], ["latency (ms, median)", None, 0.5]],
                  note="counted per example")
    assert table.to_markdown() == (
        "### Dense vs pruned\n"
        "\n"
        "| metric | dense | pruned |\n"
        "|---|---|---|\n"
        "| parameters | 266,610 | 26,661 |\n"
        "| test accuracy (%) | 98.1 | 97.85 |\n"
        "| latency (ms, median) | – | 0.5 |\n"
        "\n"
        "counted per example\n"
    )


def test_markdown_table_without_title_or_note() -> None:
    assert Table("", ["a", "b"], [[1, True]]).to_markdown() == "| a | b |\n|---|---|\n| 1 | yes |\n"
    assert Table("", ["a"], []).to_markdown() == "| a |\n|---|\n"


def test_html_table_exact_text() -> None:
    table = Table("Headline", ["measure", "value"], [["compression ratio", 10.0], ["speed-up", 2.345678]], note="n")
    assert table.to_html() == (
        "<h3>Headline</h3>"
        "<table><thead><tr><th>measure</th><th>value</th></tr></thead>"
        "<tbody><tr><td>compression ratio</td><td>10</td></tr><tr><td>speed-up</td><td>2.346</td></tr></tbody></table>"
        "<p class='note'>n</p>"
    )
    assert Table("", ["a"], [[None]]).to_html() == "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>–</td></tr></tbody></table>"


def test_html_escapes_hostile_names_everywhere() -> None:
    table = Table("<b>title</b> & co", ["layer <i>", "'q'"],
                  [["<script>alert(1)</script>", "a & b"], ['x"y', "p|q"]], note="<img src=x onerror=alert(1)>")
    assert table.to_html() == (
        "<h3>&lt;b&gt;title&lt;/b&gt; &amp; co</h3>"
        "<table><thead><tr><th>layer &lt;i&gt;</th><th>&#x27;q&#x27;</th></tr></thead>"
        "<tbody><tr><td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>a &amp; b</td></tr>"
        "<tr><td>x&quot;y</td><td>p|q</td></tr></tbody></table>"
        "<p class='note'>&lt;img src=x onerror=alert(1)&gt;</p>"
    )


def test_fmt_keeps_the_sign_of_infinity() -> None:
    assert fmt(float("-inf")) == "-∞"  # the minus sign of -1,234


def test_a_pipe_in_a_markdown_cell_does_not_split_the_row() -> None:
    table = Table("", ["layer", "kept | total"], [["blocks|0.conv", 0.5]])
    assert table.to_markdown() == "| layer | kept \\| total |\n|---|---|\n| blocks\\|0.conv | 0.5 |\n"
    # every row still has as many unescaped separators as the header
    rows = table.to_markdown().splitlines()
    assert {row.replace("\\|", "").count("|") for row in rows} == {3}
