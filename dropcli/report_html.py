"""report.html: a study on one self-contained page, to show or send.

    $ dropcli report results/ablation      # writes results/ablation/report.html

The page holds the study's question and design (grid, seeds, epochs, data, command, code commit,
CPU or GPU, torch version, time: from study.json and runs.csv), its figures (PNG, embedded as
base64 data URIs), the conclusions (conclusions.py, written from summary.csv) and the summary
table. It loads nothing: no network, no CDN, no script, and a Content-Security-Policy that forbids
anything but its own inline style and data: images. Every text from a file or path is
HTML-escaped. Written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import shlex
from pathlib import Path

import pandas as pd

from dropcli.conclusions import METRIC_NAMES, Namer, diff_text, p_text, percent, sentences
from dropcli.config import DEFAULT_SEED, TrainConfig, fmt_number
from dropcli.plots import budget

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#111;line-height:1.45}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}table{border-collapse:collapse;font-size:.85rem}
th,td{border-bottom:1px solid #ccc;padding:.25rem .5rem;text-align:right;vertical-align:top}
td{white-space:nowrap}td.text{white-space:normal}
th{background:#f3f3f3}td.text,th.text{text-align:left}code{font-size:.85rem;word-break:break-all}
figure{margin:1.5rem 0}img{max-width:100%;height:auto;border:1px solid #ddd}figcaption{font-size:.85rem;color:#333}
ol li{margin-bottom:.5rem}"""
AXIS_NAMES = {"keep_probs": "hidden keep probability", "input_keep_prob": "input keep probability",
              "max_norm": "max-norm", "train_size": "training-set size", "lr": "learning rate",
              "hidden": "hidden widths"}  # lr and hidden: in a summary that varies them


def esc(value) -> str:
    """HTML-escaped text of any value (quotes too). A path's bytes the locale could not decode (held
    as surrogates, as under a C locale) are read as UTF-8, and a byte that is not UTF-8 shows as U+FFFD,
    so the page is always valid UTF-8."""
    text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return html.escape(text, quote=True)


def _values(values) -> str:
    return ", ".join(values)


def question(summary: pd.DataFrame) -> str:
    """The study's question, from the axes it varies and its baseline."""
    names = Namer(summary)
    metric = METRIC_NAMES.get(summary["metric"].iloc[0], summary["metric"].iloc[0])
    axes = [f"{AXIS_NAMES[c]} ({_values(sorted(set(_fmt(c, v) for v in summary[c])))})" for c in names.varied]
    compared = summary[summary["paired_seeds"].notna()]
    if compared.empty or names.row(compared["baseline"].iloc[0]) is None:
        what = " and ".join(axes) or "this configuration"
        return f"What {metric} does {what} reach over its seeds?"
    r = compared.iloc[0]
    _, base, _ = names.pair(r, names.row(r["baseline"]))
    return f"How does {metric} change with {' and '.join(axes)}, against {base}, paired seed by seed?"


def _fmt(col: str, v) -> str:
    if col == "max_norm":
        return "none" if pd.isna(v) else fmt_number(v)
    if col == "train_size":
        return f"{int(v):,}"
    return str(v) if col in ("keep_probs", "hidden") else fmt_number(v)


def equivalent_command(identity: dict | None, runs: pd.DataFrame, out: Path) -> str:
    """A dropcli ablate command that makes this study, rebuilt from study.json's grid and the
    settings that differ from TrainConfig's defaults (the command as typed is not recorded). Every
    value is one shell word (shlex quoting): a received study.json or runs.csv (a device such as
    'cpu; curl x | sh') or a folder's name cannot make the pasted command run anything else."""
    if not identity:
        return "(no study.json: the command is not recorded)"
    grid, settings, default = identity["grid"], identity["settings"], TrainConfig().to_dict()
    parts = ["dropcli", "ablate", "--keep-probs", ",".join(k.replace(" ", ":") for k in grid["keep_probs"])]
    if grid["input_keep_probs"] != [1.0]:
        parts += ["--input-keep-probs", ",".join(fmt_number(k) for k in grid["input_keep_probs"])]
    if grid["max_norms"] != ["none"]:
        parts += ["--max-norms", ",".join(grid["max_norms"])]
    full = 60_000 - settings.get("validation_size", 5000)
    if grid["train_sizes"] != [full]:
        parts += ["--train-sizes", ",".join(str(n) for n in grid["train_sizes"])]
    if "lrs" in grid:
        parts += ["--lrs", ",".join(fmt_number(lr) for lr in grid["lrs"])]
    if "hiddens" in grid:
        parts += ["--hiddens", ",".join(":".join(map(str, h)) for h in grid["hiddens"])]
    if settings.get("steps") is not None:  # the budget sets the epochs
        settings = {k: v for k, v in settings.items() if k != "epochs"}
    seeds = grid["seeds"]
    parts += (["--seeds", str(len(seeds))] if seeds == list(range(DEFAULT_SEED, DEFAULT_SEED + len(seeds)))
              else ["--seed-list", ",".join(map(str, seeds))])
    for key, value in sorted(settings.items()):
        if key in default and json.dumps(value) != json.dumps(default[key]) and value is not None:
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            parts += [f"--{key.replace('_', '-')}", text]
    groups, devices = runs["group_size"].unique(), runs["device"].unique()
    if len(groups) == 1:
        parts += ["--parallel-models", str(int(groups[0]))]
    if len(devices) == 1:
        parts += ["--device", str(devices[0])]
    return shlex.join(parts + ["--out", str(out)])


def design(out: Path, runs: pd.DataFrame, summary: pd.DataFrame, command: str | None,
           identity: dict | None) -> list[tuple[str, str]]:
    """(label, text) rows of the study's design and provenance."""
    from dropcli.data import TITLES
    from dropcli.provenance import code_version

    r0, seeds = runs.iloc[0], sorted(runs["seed"].unique())
    configs = len(summary)
    grid = "; ".join(f"{AXIS_NAMES[c]}: {_values(sorted(set(_fmt(c, v) for v in summary[c])))}"
                     for c in AXIS_NAMES if c in summary and summary[c].notna().any())
    commits = sorted(set(runs["dropcli_version"]))
    ok = int((runs["status"] == "ok").sum())
    return [
        ("grid", grid),
        ("seeds", f"{len(seeds)}: " + ", ".join(map(str, seeds))),
        ("cells", f"{len(runs)} ({configs} configuration{'s' if configs != 1 else ''} x {len(seeds)} seed{'s' if len(seeds) != 1 else ''}); {ok} finished, {len(runs) - ok} diverged"),
        ("training", f"{budget(runs)}; hidden {_values(sorted(set(runs['hidden'])))}; {r0['init']} initialisation; "
                     f"Adam, learning rate {_values(sorted(set(fmt_number(v) for v in runs['lr'])))}, "
                     f"batch {int(r0['batch_size'])}; {r0['precision']}"),
        ("data", f"{TITLES.get(r0['dataset'], r0['dataset'])}: {_training_sets(runs)}, "
                 f"{int(r0['test_images']):,} test images"
                 + (f"; files sha256 {identity['data']['sha256']}" if identity and identity.get("data") else "")),
        ("command (equivalent)", equivalent_command(identity, runs, out)),
        ("report", command or f"dropcli report {out}"),
        ("code", f"{_values(commits)} (training); {code_version()} (this report)"),
        ("ran on", "; ".join(sorted(set(f"{d} ({c})" for d, c in zip(runs["device"], runs["cpu"]))))
         + f"; lockstep groups of {_values(sorted(set(str(int(k)) for k in runs['group_size'])))}"),
        ("engine", "; ".join(sorted(set(runs["engine"])))),
        ("torch", _values(sorted(set(runs["torch_version"])))),
        ("finished", f"{min(runs['finished_at'])} to {max(runs['finished_at'])}"),
    ]


def _training_sets(runs: pd.DataFrame) -> str:
    sizes = _values(sorted(set(f"{int(n):,}" for n in runs["train_size"])))
    how = {"all": "all the training images", "random": "a random subset per seed", "first": "the first images"}
    return f"training sets of {sizes} images ({' and '.join(how[s] for s in sorted(set(runs['subset'])))})"


def summary_html(summary: pd.DataFrame) -> str:
    """The summary as an HTML table (accuracies in %, differences in points)."""
    heads = ["hidden keep", "input keep", "max-norm", "training images", "runs", "test accuracy (%)", "± 95% CI",
             "gap (points)", "difference (points) [95% CI]", "Holm p", "seeds better", "conclusion", "rank"]
    rows = []
    for _, r in summary.iterrows():
        cells = [r["keep_probs"], fmt_number(r["input_keep_prob"]), _fmt("max_norm", r["max_norm"]),
                 f"{int(r['train_size']):,}", f"{r['runs']}" + (f" (+{r['diverged']} diverged)" if r["diverged"] else ""),
                 percent(r["test_accuracy_mean"]), percent(r["test_accuracy_ci95"]), percent(r["generalization_gap_mean"]),
                 diff_text(r), "" if pd.isna(r["p_holm"]) else p_text(r["p_holm"]),
                 "" if pd.isna(r["paired_seeds"]) else f"{int(r['wins'])} of {int(r['paired_seeds'])}",
                 r["conclusion"], "" if pd.isna(r["rank"]) else str(int(r["rank"]))]
        rows.append("<tr>" + "".join(f'<td{" class=text" if i == 11 else ""}>{esc(c)}</td>' for i, c in enumerate(cells))
                    + "</tr>")
    head = "".join(f"<th{' class=text' if h == 'conclusion' else ''}>{esc(h)}</th>" for h in heads)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def figure_html(path: Path, caption: str) -> str:
    """A <figure> holding the PNG at `path` as a base64 data URI, with its (escaped) caption."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)} ({esc(Path(path).name)})</figcaption></figure>")


def render(out: Path, runs: pd.DataFrame, summary: pd.DataFrame, figures: list, command: str | None = None,
           identity: dict | None = None) -> str:
    """The page's HTML text. runs, summary: the study's runs.csv and summary.csv (report.read_summary)
    frames; figures: [(PNG path, caption)] as plot_study.draw_study_figures returns; identity: its
    study.json (study.read_identity), for the design and the equivalent command."""
    title = f"Study: {out}"
    rows = "".join(f'<tr><th class=text>{esc(k)}</th><td class=text><code>{esc(v)}</code></td></tr>'
                   if k in ("command (equivalent)", "report") else f"<tr><th class=text>{esc(k)}</th><td class=text>{esc(v)}</td></tr>"
                   for k, v in design(out, runs, summary, command, identity))
    said = sentences(summary)
    conclusions = "".join(f"<p>{esc(s)}</p>" for s in said[:1]) + (
        "<ol>" + "".join(f"<li>{esc(s)}</li>" for s in said[1:]) + "</ol>" if len(said) > 1 else "")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>{esc(title)}</h1><p><strong>Question.</strong> {esc(question(summary))}</p>\n"
            f"<h2>Design</h2><table>{rows}</table>\n<h2>Conclusions</h2>{conclusions}\n"
            f"<h2>Figures</h2>{''.join(figure_html(p, c) for p, c in figures)}\n"
            f"<h2>Summary</h2>{summary_html(summary)}\n"
            f"<p>Every number here is in summary.csv and runs.csv beside this file ({esc(out)}).</p></body></html>\n")
