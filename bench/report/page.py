"""REPORT.html: the report as one self-contained, interactive page.

The page carries its data as JSON in a ``<script type="application/json">`` tag and draws
its charts in the browser with Vega-Lite (vendored under ``assets/``, see its README),
so the selectors (machine/device, model, backend, precision) and the case search filter
every chart and table without a server. Scripts and styles are inlined: the file opens
from ``file://`` with the network off and requests nothing.

What Python prepares (testable without a browser): one record per case shown
(:func:`point_records`, with the 99% interval of its figure), the per-case speedups of
mixed precision and of XLA / torch.compile (:func:`speedup_records`: pairs of cases that
differ in that alone, never averaged across cases), and each case's runs over commits
where a machine measured several commits (:func:`history_records`). The summary rows and
the cross-machine verdicts come from the caller and are shown as given.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bench.report.text import listed

REPORT_HTML = "REPORT.html"
ASSETS = Path(__file__).parent / "assets"
#: Inlined in this order: vega-lite needs vega, vega-embed needs both.
LIBRARIES = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
PAGE_SCRIPT, PAGE_STYLE = "page.js", "page.css"
VERDICT_COLUMNS = ["label", "reference", "suite", "case", "model", "batch_size", "precision",
                   "xla", "backend", "ratio", "low", "high", "verdict", "runs",
                   "reference_runs", "basis"]
#: Suites whose figure is a throughput (samples/s) against batch size.
THROUGHPUT_SUITES = ("train", "inference")
MIXED_PRECISIONS = ("fp16", "bf16")
#: What makes two cases comparable, besides the setting a speedup compares.
PAIR_KEY = ["suite", "label", "model", "batch_size", "backend", "variant", "strategy",
            "replicas"]
#: Per-case fields the page reads, under their frame column names.
POINT_COLUMNS = ["label", "machine_id", "suite", "case", "model", "batch_size", "precision",
                 "xla", "backend", "median", "samples_per_second", "ci_halfwidth",
                 "stop_reason", "peak_share", "reached", "seconds_to_accuracy",
                 "target_accuracy", "run_status"]


def empty_verdicts() -> pd.DataFrame:
    """A verdicts frame with no rows: the page then says there is nothing to compare."""
    return pd.DataFrame(columns=VERDICT_COLUMNS)


def _plain(value: object) -> object:
    """``value`` as JSON can hold it: None for NaN/NA, Python numbers, ISO 8601 times."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):  # six digits: the page shows three or four
        return float(f"{value:.6g}") if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, str) else str(value)


def _flag(value: object) -> bool:
    return value is True or value is np.True_


def interval(figure: object, halfwidth: object, rate: bool) -> tuple[float | None, ...]:
    """The 99% interval of a figure whose *time* has the relative half-width ``halfwidth``
    (``ci_halfwidth``): time × (1 ± h); a rate (work / time) divides instead, so its
    interval is rate / (1 + h) to rate / (1 − h). None, None where unknown or unbounded
    (h ≥ 1: the time's interval reaches zero)."""
    figure, h = _plain(figure), _plain(halfwidth)
    if not isinstance(figure, float | int) or not isinstance(h, float | int) or not 0 <= h < 1:
        return None, None
    low, high = (figure / (1 + h), figure / (1 - h)) if rate else (figure * (1 - h),
                                                                   figure * (1 + h))
    return _plain(low), _plain(high)


def commits_by_run(runs: Iterable) -> dict[str, tuple[str | None, str | None]]:
    """``{run file: (short commit, commit time)}`` from the loader's runs."""
    found = {}
    for run in runs:
        commit = getattr(run, "commit", None)
        short = commit[:7] + "+" * commit.endswith("+") if commit else None
        found[str(run.path)] = (short, _plain(getattr(run, "commit_time", None)))
    return found


def _case_fields(record: dict, commits: dict) -> dict:
    """The fields every chart's tooltip shows: where the figure came from and how it ended."""
    stop = _plain(record.get("stop_reason"))
    return {"run": _plain(record.get("run_file")), "commit": commits.get(
        str(record.get("run_file")), (None, None))[0], "stop": stop,
        "budget": stop == "budget", "contended": _flag(record.get("contended")),
        "concurrent": _flag(record.get("concurrent"))}


def point_records(frame: pd.DataFrame, commits: dict) -> list[dict]:
    """One record per row of ``frame`` (the cases the tables show): the case, its median
    time, throughput and share of peak with their 99% intervals, and its provenance."""
    records = []
    for row in frame.to_dict("records"):
        point = {column: _plain(row.get(column)) for column in POINT_COLUMNS}
        point["xla"] = _flag(row.get("xla"))
        point["reached"] = None if point["reached"] is None else bool(point["reached"])
        point["sps_low"], point["sps_high"] = interval(point["samples_per_second"],
                                                       point["ci_halfwidth"], rate=True)
        point["peak_low"], point["peak_high"] = interval(point["peak_share"],
                                                         point["ci_halfwidth"], rate=True)
        point["time_low"], point["time_high"] = interval(point["median"], point["ci_halfwidth"],
                                                         rate=False)
        records.append({**point, **_case_fields(row, commits)})
    return records


def _compiled(backend: str) -> str:
    return "torch.compile" if backend == "torch" else "XLA"


def speedup_records(frame: pd.DataFrame, commits: dict) -> list[dict]:
    """Per pair of cases differing only in precision (fp16/bf16 against fp32) or only in
    XLA / torch.compile (on against off): throughput on over off, and its 99% interval.

    The interval combines both cases' intervals on the log scale,
    exp(±sqrt(ln(1+h₁)² + ln(1+h₂)²)), as for independent estimates; none where either
    case has no interval. Nothing is averaged: each ratio is one case against its twin.
    """
    if frame.empty or "samples_per_second" not in frame:
        return []
    rows = frame[frame["suite"].isin(THROUGHPUT_SUITES)
                 & (pd.to_numeric(frame["samples_per_second"], errors="coerce") > 0)].copy()
    for column in PAIR_KEY:
        rows[column] = rows[column].astype(object).where(rows[column].notna(), "") \
            if column in rows else ""
    rows["xla"] = rows["xla"].map(_flag)
    pairs = [(f"{p} over fp32", rows[rows["precision"] == p], rows[rows["precision"] == "fp32"],
              "xla") for p in MIXED_PRECISIONS]
    pairs.append(("XLA / torch.compile on over off", rows[rows["xla"]], rows[~rows["xla"]],
                  "precision"))
    records = []
    for comparison, on, off, also in pairs:
        merged = on.merge(off, on=[*PAIR_KEY, also], suffixes=("", "_off"))
        for row in merged.to_dict("records"):
            ratio = row["samples_per_second"] / row["samples_per_second_off"]
            widths = [_plain(row.get("ci_halfwidth")), _plain(row.get("ci_halfwidth_off"))]
            low = high = None
            if all(isinstance(h, float | int) and 0 <= h < 1 for h in widths):
                spread = math.exp(math.sqrt(sum(math.log1p(h) ** 2 for h in widths)))
                low, high = ratio / spread, ratio * spread
            off_fields = _case_fields({k[:-4]: v for k, v in row.items() if k.endswith("_off")},
                                      commits)
            records.append({
                "comparison": comparison, "suite": row["suite"], "label": row["label"],
                "machine_id": row["machine_id"], "model": row["model"],
                "batch_size": _plain(row["batch_size"]), "backend": row["backend"],
                "precision": row["precision"], "xla": row["xla"], "case": row["case"],
                "base_case": row["case_off"], "ratio": _plain(ratio), "low": _plain(low),
                "high": _plain(high),
                "setting": _compiled(row["backend"]) if also == "precision"
                else f"{row['precision']} over fp32",
                "sps": _plain(row["samples_per_second"]),
                "base_sps": _plain(row["samples_per_second_off"]),
                **{key: value or off_fields[key] if key in ("budget", "contended",
                                                            "concurrent") else value
                   for key, value in _case_fields(row, commits).items()},
                "base_run": off_fields["run"], "base_stop": off_fields["stop"],
                "base_commit": off_fields["commit"]})
    return records


#: Commits of a case the page's history shows, the newest (``--history`` draws them all),
#: and the machine/device labels it shows them for: those with the most commits.
HISTORY_COMMITS = 20
HISTORY_LABELS = 12


def history_records(frame: pd.DataFrame, commits: dict) -> list[dict]:
    """One point per commit of a case (x: the commit's time, y: the median over its runs
    of their median time per round) where its machine/device measured that case at two
    commits or more, the newest :data:`HISTORY_COMMITS` of them, for the
    :data:`HISTORY_LABELS` labels measured at the most commits. The band: the run's 99%
    interval where the commit has one run, else its fastest to its slowest run; the
    provenance (run file, stop reason) is the newest run's. Contended and concurrent runs
    are kept and marked, not left out. One point per commit, not per run, keeps the page
    the same size for 20 runs or 20,000."""
    if frame.empty:
        return []
    keys = ["label", "suite", "case", "_commit"]
    wanted = ["label", "machine_id", "suite", "case", "model", "batch_size", "precision",
              "backend", "xla", "median", "ci_halfwidth", "run_file", "run_datetime",
              "stop_reason", "contended", "concurrent"]
    found = [commits.get(str(f), (None, None)) for f in frame["run_file"]]
    rows = frame[[c for c in wanted if c in frame]].assign(
        _commit=[short or str(f) for (short, _), f in zip(found, frame["run_file"], strict=True)],
        _when=[when for _, when in found])
    rows = rows[rows.groupby(keys[:3])["_commit"].transform("nunique") > 1]
    if rows.empty:
        return []
    commits_of = rows.groupby("label")["_commit"].nunique()
    shown = sorted(commits_of.index, key=lambda label: (-commits_of[label], label))
    rows = rows[rows["label"].isin(shown[:HISTORY_LABELS])]
    rows = rows.sort_values(["run_datetime", "run_file"], kind="stable")
    median = pd.to_numeric(rows["median"], errors="coerce")
    spoiled = {flag: rows[flag].eq(True).fillna(False).astype(bool) if flag in rows
               else pd.Series(False, index=rows.index) for flag in ("contended", "concurrent")}
    grouped = rows.assign(_median=median, **{f"_{k}": v for k, v in spoiled.items()}) \
        .groupby(keys, sort=False)
    newest = grouped.tail(1).set_index(keys)
    figures = pd.DataFrame({"runs": grouped.size(), "middle": grouped["_median"].median(),
                            "fastest": grouped["_median"].min(),
                            "slowest": grouped["_median"].max(),
                            "contended_any": grouped["_contended"].any(),
                            "concurrent_any": grouped["_concurrent"].any()})
    newest = newest.join(figures)
    newest["_time"] = [when or _plain(at) for when, at in zip(newest["_when"],
                                                              newest["run_datetime"], strict=True)]
    newest = newest.sort_values("_time", kind="stable")
    newest = newest.groupby(level=[0, 1, 2], sort=False).tail(HISTORY_COMMITS)
    records = []
    for (label, suite, case, _), row in zip(newest.index, newest.to_dict("records"),
                                                 strict=True):
        if row["runs"] == 1:
            low, high = interval(row["middle"], row.get("ci_halfwidth"), rate=False)
        else:
            low, high = _plain(row["fastest"]), _plain(row["slowest"])
        fields = _case_fields(row, commits)
        records.append({
            "label": label, "machine_id": _plain(row.get("machine_id")), "suite": suite,
            "case": case, **{column: _plain(row.get(column)) for column in (
                "model", "batch_size", "precision", "backend", "ci_halfwidth")},
            "median": _plain(row["middle"]), "runs": int(row["runs"]),
            "xla": _flag(row.get("xla")), "time_low": low, "time_high": high,
            "commit_time": row["_time"], "run_datetime": _plain(row.get("run_datetime")),
            **fields, "contended": bool(row["contended_any"]),
            "concurrent": bool(row["concurrent_any"]),
            "commit": commits.get(str(row["run_file"]), (None, None))[0] or "(no commit)"})
    return records


def run_records(runs: Iterable) -> list[dict]:
    """The runs read, newest last per machine: the page's list of what was compared."""
    return [{"machine_id": run.machine_id, "run": str(run.path),
             "datetime": _plain(run.datetime), "status": getattr(run, "status", "complete"),
             "commit": commits_by_run([run])[str(run.path)][0]}
            for run in sorted(runs, key=lambda r: (r.machine_id, str(r.datetime), str(r.path)))]


#: Runs the page's "Runs read" list shows at most, the newest (20,000 runs were 4 MB).
MAX_RUNS_LISTED = 200


def newest_runs(records: list[dict], limit: int = MAX_RUNS_LISTED) -> list[dict]:
    """The newest ``limit`` of :func:`run_records`, in their order (machine, then time)."""
    if len(records) <= limit:
        return records
    keep = set(sorted(range(len(records)), key=lambda i: records[i]["datetime"] or "",
                      reverse=True)[:limit])
    return [record for i, record in enumerate(records) if i in keep]


def page_data(frame: pd.DataFrame, summary_rows: Sequence[dict], verdicts: pd.DataFrame,
              runs: Sequence, title: str, notes: Sequence[str],
              history_frame: pd.DataFrame | None = None) -> dict:
    """Everything the page's script reads, as JSON-ready values."""
    commits = commits_by_run(runs)
    summary_columns = list(summary_rows[0]) if summary_rows else []
    verdicts = verdicts if verdicts is not None else empty_verdicts()
    return {
        "title": title, "notes": list(notes), "runs": run_records(runs),
        "points": point_records(frame, commits), "speedups": speedup_records(frame, commits),
        "history": history_records(frame if history_frame is None else history_frame,
                                   commits),
        "summary": {"columns": summary_columns,
                    "rows": [[_plain(row.get(c)) for c in summary_columns]
                             for row in summary_rows]},
        "verdicts": [{c: _plain(r.get(c)) for c in VERDICT_COLUMNS}
                     for r in verdicts.to_dict("records")]}


def script_json(data: object) -> str:
    """``data`` as JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` as
    \\u escapes, so no ``</script>`` or ``<!--`` in the data can end or change it."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def inline_script(source: str) -> str:
    """A vendored script ready to inline: its source-map comment (the .map files are not
    shipped) dropped, and any ``</script`` broken so it cannot end the element."""
    source = re.sub(r"^//# sourceMappingURL=.*$", "", source, flags=re.MULTILINE)
    return re.sub(r"</(script)", r"<\\/\1", source, flags=re.IGNORECASE)


def _markup(text: str) -> str:
    """A note as HTML: escaped, with `backtick` spans as code."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def intro(data: dict) -> str:
    """The header's line: how many runs, of which machines, from when to when."""
    runs = data["runs"]
    machines = sorted({run["machine_id"] for run in runs})
    labels = sorted({point["label"] for point in data["points"]})
    dates = sorted(run["datetime"][:10] for run in runs if run["datetime"])
    span = f", {dates[0]} to {dates[-1]}" if dates and dates[0] != dates[-1] else \
        f", {dates[0]}" if dates else ""
    named = listed(machines, code=False)
    return (f"{len(runs)} run{'s' if len(runs) != 1 else ''} on {len(machines)} machine"
            f"{'s' if len(machines) != 1 else ''} ({named or 'none'}){span}; "
            f"{len(labels)} machine/device label{'s' if len(labels) != 1 else ''}, "
            f"{len({(p['label'], p['suite'], p['case']) for p in data['points']})} cases.")


def render_page(data: dict) -> str:
    """The whole page: header, filters, tables and chart slots, data, inlined code."""
    style = (ASSETS / PAGE_STYLE).read_text(encoding="utf-8")
    libraries = "\n".join(f"<script>{inline_script((ASSETS / name).read_text('utf-8'))}</script>"
                          for name in LIBRARIES)
    notes = "".join(f"<li>{_markup(note)}</li>" for note in data["notes"])
    newest = newest_runs(data["runs"])
    runs = "".join(
        f"<tr><td>{html.escape(r['machine_id'])}</td><td>{html.escape(r['run'])}</td>"
        f"<td>{html.escape((r['datetime'] or '')[:19].replace('T', ' '))}</td>"
        f"<td>{html.escape(r['commit'] or '—')}</td><td>{html.escape(r['status'])}</td></tr>"
        for r in newest)
    runs_title = f"Runs read ({len(data['runs'])}" + (
        f"; the newest {len(newest)} listed, every run in REPORT.md's Runs and the index)"
        if len(newest) < len(data["runs"]) else ")")
    charts = "".join(
        f'<section class="chart"><h2>{html.escape(heading)}</h2><p class="caption">'
        f'{caption}</p>{extra}<div id="chart-{name}" class="view"></div></section>'
        for name, heading, caption, extra in CHARTS)
    references = sorted({v["reference"] for v in data["verdicts"] if v.get("reference")})
    reference = ", ".join(f"<code>{html.escape(r)}</code>" for r in references) or \
        "the reference"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{html.escape(data['title'])}</title>
<style>{style}</style></head>
<body>
<header><h1>{html.escape(data['title'])}</h1><p id="intro">{html.escape(intro(data))}</p>
{f'<ul class="notes">{notes}</ul>' if notes else ''}
<details><summary>{html.escape(runs_title)}</summary><table class="runs"><thead><tr>
<th>machine</th><th>run file</th><th>run (UTC)</th><th>commit</th><th>status</th></tr></thead>
<tbody>{runs}</tbody></table></details></header>
<nav id="filters" aria-label="filters">
<label>machine/device <select id="filter-label"></select></label>
<label>model <select id="filter-model"></select></label>
<label>backend <select id="filter-backend"></select></label>
<label>precision <select id="filter-precision"></select></label>
<label>case <input id="search" type="search" list="case-ids" placeholder="case id contains…"
 autocomplete="off"></label><datalist id="case-ids"></datalist>
<button id="reset" type="button">show all</button> <span id="shown"></span></nav>
<main>
<section><h2>Summary</h2><div id="summary"></div></section>
<section><h2>Verdicts across machines</h2><p class="caption">Per case, each machine/device
against {reference}: the speed ratio (above 1: faster) of the geometric means of their
runs, its 99% interval from the run-to-run spread, and the verdict (faster / slower
beyond the threshold, same inside it, else undecided); setting = the case id without its
device.</p><div id="verdicts"></div></section>
{charts}
</main>
<script type="application/json" id="report-data">{script_json(
    {key: value for key, value in data.items() if key != "runs"})}</script>
{libraries}
<script>{(ASSETS / PAGE_SCRIPT).read_text(encoding="utf-8")}</script>
</body></html>
"""


#: Nothing but the page itself: no connections, fonts, frames or linked files. Vega compiles
#: its expressions with ``new Function`` ('unsafe-eval'); vega-embed adds a style element.
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
       "style-src 'unsafe-inline'; img-src data:")
#: The chart slots: id, heading, caption (HTML), extra controls.
MARKS = ("Hollow marker: stopped on the time budget before its interval was reached; red "
         "ring: contended or concurrent (timed while other processes used the machine). "
         "Hover a point for its run file, commit, stop reason and interval.")
CHARTS = (
    ("throughput", "Throughput against batch size",
     "Samples/s per machine/device (colour) and model (shape), log-log; bars: 99% interval. "
     + MARKS, ""),
    ("speedup", "Mixed precision and XLA / torch.compile speedups",
     "Throughput of a case over its twin that differs only in precision (fp16/bf16 over "
     "fp32) or only in XLA / torch.compile (on over off), log axis: a row per case and "
     "change, a point per machine/device that measured both; bars: 99% interval of the "
     "ratio. " + MARKS, ""),
    ("tta", "Time to accuracy",
     "Seconds to the target test accuracy, compile included, log axis; a row per case, a "
     "point per machine/device; hollow: target not reached (the whole run's time). "
     + MARKS, ""),
    ("peak", "Share of calibrated peak",
     "Model GFLOP/s over the best matmul measured on the device in the case's dtype. "
     + MARKS, ""),
    ("history", "History of a case across commits",
     "Median time per round over each commit's runs (points; the band: a single run's 99% "
     "interval, else the fastest to the slowest run), the newest 20 commits of the cases a "
     "machine/device measured at several commits, for the 12 machine/devices with the most "
     "commits (python -m bench.report --history draws every commit of every machine). "
     + MARKS, '<label>case <select id="history-case"></select></label>'),
)


def write_page(out_dir: Path, frame: pd.DataFrame, summary_rows: Sequence[dict],
               verdicts: pd.DataFrame | None, runs: Sequence, title: str,
               notes: Sequence[str], write: Callable[[Path, bytes | str], None],
               history_frame: pd.DataFrame | None = None) -> Path:
    """Write REPORT.html into ``out_dir`` through ``write`` (an atomic writer).

    ``frame``: the cases the tables show (one row per machine and case); ``summary_rows``:
    a table as given (the first row's keys are its columns, in order; columns named
    label, model, backend, precision or case follow the page's filters);
    ``verdicts``: :data:`VERDICT_COLUMNS` (empty or None: none); ``runs``: the loader's
    runs (for commits and the list of runs); ``history_frame``: every run's rows (default
    ``frame``), for the history of cases across commits.
    """
    path = Path(out_dir) / REPORT_HTML
    write(path, render_page(page_data(frame, summary_rows, verdicts, runs, title, notes,
                                      history_frame)))
    return path
