"""report.html: one self-contained page with the design, the figures, the conclusions and the
summary, every text from a file escaped (the browser test renders it: test_browser.py)."""

import base64
import html
import re
from pathlib import Path

import pytest
from committed import committed_studies
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic_study import write_study

from dropcli.conclusions import sentences
from dropcli.report import build_report, read_summary

SCRIPT = '<script>alert("x")</script>'


def test_a_report_is_self_contained_and_holds_the_study(tmp_path):
    folder = write_study(tmp_path / "study", keeps=(0.5, 0.7, 1.0), input_keeps=(0.8, 1.0), seeds=(777, 778, 779, 780))
    build_report(folder, command="dropcli report study")
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "default-src 'none'; img-src data:" in page
    assert not re.search(r"<(script|link|iframe|object|embed)\b", page) and "http://" not in page and "https://" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    for name, src in zip(("ablation.png", "differences.png", "curves.png"), sources):
        assert base64.b64decode(src.split(",", 1)[1]) == (folder / name).read_bytes()
    for said in sentences(read_summary(folder / "summary.csv")):  # every conclusion, word for word
        assert html.escape(said) in page
    for fact in ("777, 778, 779, 780", "3 epochs", "0.1.0+g0123456789ab", "Synthetic CPU, 2 cores", "2.14.1",
                 "2026-11-29T10:00:00+00:00", "10,000 test images", "dropcli ablate --keep-probs 0.5,0.7,1 "
                 "--input-keep-probs 0.8,1 --seeds 4 --epochs 3 --parallel-models 4 --device cpu", "dropcli report study"):
        assert fact in page, fact
    assert "against no dropout, paired seed by seed?" in page


def test_text_from_files_and_paths_is_escaped(tmp_path):
    folder = write_study(tmp_path / f"a{SCRIPT}&b", keeps=(0.7, 1.0), seeds=(777, 778))
    runs = (folder / "runs.csv").read_text().replace("Synthetic CPU, 2 cores", "<b>CPU</b> & co")
    (folder / "runs.csv").write_text(runs)
    build_report(folder)
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert SCRIPT not in page and "<b>CPU</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "&lt;b&gt;CPU&lt;/b&gt; &amp; co" in page


def test_a_one_cell_study_has_a_page_without_comparisons(tmp_path):
    folder = write_study(tmp_path / "one", keeps=(0.7,), seeds=(777,))
    build_report(folder)
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "Nothing is compared: the study has one configuration" in page and page.count("data:image/png;base64,") == 2  # ablation.png and curves.png


COMMITTED = committed_studies()


@pytest.mark.parametrize("study", COMMITTED, ids=[p.name for p in COMMITTED])
def test_committed_reports_and_readmes_quote_what_report_writes(study):
    """The committed report.html embeds the committed figures and states the conclusions of the
    committed summary.csv; the study README quotes those sentences word for word, in order."""
    said = sentences(read_summary(study / "summary.csv"))
    page = (study / "report.html").read_text(encoding="utf-8")
    for source in re.findall(r'src="data:image/png;base64,([^"]*)"', page):
        assert any(base64.b64decode(source) == png.read_bytes() for png in study.glob("*.png"))
    assert all(html.escape(s) in page for s in said)
    readme = (study / "README.md").read_text(encoding="utf-8")
    quoted = [line[2:] for line in readme.splitlines() if line.startswith("> Metric: ")]
    numbered = [re.sub(r"^> \d+\. ", "", line) for line in readme.splitlines() if re.match(r"^> \d+\. ", line)]
    assert quoted == said[:1] and numbered == said[1:]


def test_every_sentence_the_readme_quotes_is_one_a_committed_study_says():
    """A quoted conclusion in the README ('  > keep 0.7 beats ...') is word for word one that
    `dropcli report` writes from a committed summary.csv, or one a committed study's README quotes
    (where that README says which other metric or baseline gave it): no figure is retyped by hand."""
    from committed import ROOT

    said = {s for study in COMMITTED for s in sentences(read_summary(study / "summary.csv"))}
    quoted_by_studies = {line.strip()[2:] for study in COMMITTED
                         for line in (study / "README.md").read_text(encoding="utf-8").splitlines()
                         if line.strip().startswith("> ")}
    quotes = [line.strip()[2:] for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
              if re.match(r"^\s*> [a-z]", line)]
    assert len(quotes) >= 10
    assert [q for q in quotes if q not in said | quoted_by_studies] == []


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(device=_TEXT, out=_TEXT, data_dir=_TEXT)
def test_the_equivalent_command_is_one_token_per_value_whatever_the_files_say(device, out, data_dir):
    """A received runs.csv's device (a text cell), a study.json's data_dir and the folder's name
    reach the page's command as single shell words: pasted into bash, none of them can run
    anything ('cpu; curl evil | sh' stays the --device value)."""
    import shlex

    import pandas as pd

    from dropcli.report_html import equivalent_command

    identity = {"grid": {"keep_probs": ["0.5", "1"], "input_keep_probs": [1.0], "max_norms": ["none"],
                         "train_sizes": [500], "seeds": [777, 778]},
                "settings": {"data_dir": data_dir, "epochs": 1}}
    runs = pd.DataFrame({"group_size": [1, 1], "device": [device, device]})
    words = shlex.split(equivalent_command(identity, runs, Path(out)))
    assert words[words.index("--device") + 1] == device
    assert words[words.index("--data-dir") + 1] == data_dir
    assert words[-2:] == ["--out", str(Path(out))]
