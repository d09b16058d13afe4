"""Tests of REPORT.html (bench/report/page.py).

Without a browser: the data the page carries (intervals, per-case speedups, history), its
JSON cannot end its script element, every asset is inlined once and nothing is linked, and
``python -m bench.report`` writes it unless ``--no-html``.

In a browser (marked ``browser``; ``tox -e browser`` runs them, with no framework
installed): Debian's ``chromium`` and ``chromium-driver`` through Selenium 4, headless, one
browser for the module. The page opens from ``file://`` with every request to another
origin blocked (CDP ``Network.setBlockedURLs``), and the performance log must show no
request but the file itself; the browser log must hold no error; every chart draws marks
(the SVG renderer makes them DOM elements); a selector, the case search and the sortable
tables change what is shown. Elsewhere (``tox -e py``: no selenium; no Chromium) they are
skipped with the reason; ``tox -e browser`` sets FASHION_BENCH_REQUIRE_BROWSER, so there a
missing browser fails them. Screenshots: the synthetic page in the test's tmp folder, the page
over the committed results/ in /tmp/report-page.png.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.report import page
from bench.report.cli import build_parser, main
from bench.report.loader import WarningLog, load_results
from bench.report.selection import select_runs
from bench.store.atomic import write_atomic

FIXTURES = Path(__file__).parent / "fixtures"
COMMITTED = Path(__file__).parent.parent / "results"
SCREENSHOT = Path("/tmp/report-page.png")
AMD, INTEL = "amd-epyc-2c", "intel-xeon-8c-nvidia-h100"
CHARTS = ("throughput", "speedup", "tta", "peak", "history")

sys.path.insert(0, str(FIXTURES))
import make_fixtures  # noqa: E402  (lives beside the stored fixtures)

pytestmark = pytest.mark.backend_free  # tox -e py runs these; jax and torch need not
browser_only = pytest.mark.browser

# --------------------------------------------------------------------------- synthetic runs


def _case(machine_id: str, device: str, suite: str, model: str, batch: int, precision: str,
          xla: bool, seconds: float, **fields) -> dict:
    """A benchmark of three rounds around ``seconds`` with schema-3 fields."""
    extra = make_fixtures._base_extra(machine_id, device, suite, model, batch, precision, xla)
    samples = 60_000 if suite == "train" else 10_000
    extra.update(ci_halfwidth=0.02, stop_reason="converged", contended=False)
    if suite in ("train", "inference"):
        extra.update(samples_per_second=samples / seconds,
                     gflops=samples / seconds * (1.4e6 if model == "mlp" else 25e6) / 1e9)
    extra.update(fields)
    return make_fixtures.make_benchmark(extra, [seconds * 0.99, seconds, seconds * 1.01])


def _cases(machine_id: str, device: str, scale: float) -> list[dict]:
    """Train and inference over batch sizes, a precision pair and an XLA pair, and time to
    accuracy (one reached, one stopped on the budget); one contended, one budget-stopped."""
    cases = [_case(machine_id, device, "train", "mlp", batch, "fp32", True,
                   scale * (2.0 + 64 / batch)) for batch in (32, 128, 512)]
    cases += [
        _case(machine_id, device, "train", "mlp", 128, "fp16", True, scale * 1.8),
        _case(machine_id, device, "train", "mlp", 128, "fp32", False, scale * 3.1,
              contended=True),
        _case(machine_id, device, "train", "cnn", 128, "fp32", False, scale * 20.0,
              stop_reason="budget", ci_halfwidth=0.2),
        _case(machine_id, device, "inference", "mlp", 1024, "fp32", True, scale * 0.05),
        _case(machine_id, device, "inference", "cnn", 1024, "fp32", True, scale * 0.4,
              ci_halfwidth=None, stop_reason=None),
        _case(machine_id, device, "tta", "mlp", 128, "fp32", True, scale * 9.0, reached=True,
              seconds_to_accuracy=scale * 8.5, target_accuracy=0.88, epochs=3,
              final_accuracy=0.881),
        _case(machine_id, device, "tta", "cnn", 128, "fp32", False, scale * 60.0,
              reached=False, target_accuracy=0.91, stop_reason="budget", epochs=5,
              final_accuracy=0.9)]
    return cases


def write_synthetic(folder: Path) -> Path:
    """Two machines: AMD at two commits (its history), Intel's CPU and GPU at one."""
    runs = [(AMD, "2026-11-20T07:00:00+00:00", "a" * 40, [("cpu", 1.0)]),
            (AMD, "2026-11-27T07:00:00+00:00", "b" * 40, [("cpu", 0.9)]),
            (INTEL, "2026-11-21T07:00:00+00:00", "c" * 40, [("cpu", 0.5), ("gpu:0", 0.05)])]
    for index, (machine_id, when, commit, devices) in enumerate(runs, 1):
        document = make_fixtures.make_document(
            machine_id, when, [b for device, scale in devices
                               for b in _cases(machine_id, device, scale)], schema=3)
        document["commit_info"]["id"] = commit
        path = folder / machine_id / f"{index:04d}_{when[:10].replace('-', '')}-070000.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document), encoding="utf-8")
    return folder


def summary_rows(frame: pd.DataFrame) -> list[dict]:
    """A hand-made summary table: one row per training case shown."""
    rows = frame[frame["suite"] == "train"]
    return [{"machine/device": r["label"], "case": r["case"], "model": r["model"],
             "backend": r["backend"], "precision": r["precision"],
             "samples/s": round(r["samples_per_second"], 1)} for r in rows.to_dict("records")]


def verdict_rows() -> pd.DataFrame:
    """Hand-made cross-machine verdicts, one of each word."""
    rows = [[f"{INTEL}/cpu", f"{AMD}/cpu", "train", f"mlp-cpu-b{batch}-fp32-xla", "mlp", batch,
             "fp32", True, "tensorflow", ratio, ratio * 0.9, ratio * 1.1, verdict, 1, 2,
             "runs' medians"]
            for batch, ratio, verdict in ((32, 2.0, "faster"), (128, 0.5, "slower"),
                                          (512, 1.0, "same"), (1024, 1.3, "undecided"))]
    return pd.DataFrame(rows, columns=page.VERDICT_COLUMNS)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    folder = write_synthetic(tmp_path_factory.mktemp("results"))
    results = load_results([folder], WarningLog())
    return results, select_runs(results.benchmarks, all_runs=False)


@pytest.fixture(scope="module")
def synthetic_page(synthetic, tmp_path_factory) -> Path:
    results, selected = synthetic
    return page.write_page(tmp_path_factory.mktemp("page"), selected, summary_rows(selected),
                           verdict_rows(), results.runs, "Synthetic report",
                           ["a note with `code` </script>"], write_atomic,
                           history_frame=results.benchmarks)


# --------------------------------------------------------------------------- without a browser


def test_interval_of_a_time_and_of_a_rate():
    assert page.interval(2.0, 0.1, rate=False) == pytest.approx((1.8, 2.2))
    assert page.interval(100.0, 0.25, rate=True) == pytest.approx((80.0, 100 / 0.75), rel=1e-5)
    assert page.interval(2.0, None, rate=True) == (None, None)
    assert page.interval(2.0, 1.5, rate=True) == (None, None)  # unbounded: no bar


def test_script_json_cannot_end_the_script():
    text = page.script_json({"a": "</script><!-- & >", "b": None})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & >", "b": None}


def test_speedups_pair_cases_one_to_one(synthetic):
    results, selected = synthetic
    commits = page.commits_by_run(results.runs)
    speedups = page.speedup_records(selected, commits)
    amd = [s for s in speedups if s["label"] == f"{AMD}/cpu"]
    # One fp16 pair (mlp b128 XLA) and one XLA pair (mlp b128 fp32): never averaged.
    assert sorted(s["comparison"] for s in amd) == ["XLA / torch.compile on over off",
                                                    "fp16 over fp32"]
    fp16 = next(s for s in amd if s["comparison"] == "fp16 over fp32")
    assert fp16["case"] == "mlp-cpu-b128-fp16-xla" and fp16["base_case"] == "mlp-cpu-b128-fp32-xla"
    assert fp16["ratio"] == pytest.approx((2.0 + 0.5) / 1.8, rel=1e-5)
    spread = math.exp(math.log(1.02) * math.sqrt(2))  # ln(1.02) twice, in quadrature
    assert fp16["low"] == pytest.approx(fp16["ratio"] / spread, rel=1e-4)
    assert fp16["commit"] == "b" * 7  # the newest run's
    xla = next(s for s in amd if s["comparison"] != "fp16 over fp32")
    assert xla["contended"] is True and xla["setting"] == "XLA"  # the off side was contended


def test_history_only_where_a_machine_has_several_commits(synthetic):
    results, _ = synthetic
    history = page.history_records(results.benchmarks, page.commits_by_run(results.runs))
    assert {h["label"] for h in history} == {f"{AMD}/cpu"}
    assert {h["commit"] for h in history} == {"a" * 7, "b" * 7}
    assert all(h["run"] and h["commit_time"].startswith("2026-11-") for h in history)


def test_page_is_one_file_that_links_nothing(synthetic_page):
    text = synthetic_page.read_text(encoding="utf-8")
    for library in page.LIBRARIES:
        source = page.inline_script((page.ASSETS / library).read_text(encoding="utf-8"))
        assert text.count(source[:300]) == 1, f"{library} not inlined once"
    assert "sourcemappingurl" not in text.lower()
    assert text.lower().count("</script>") == 5  # data, three libraries, the page's script
    markup = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.DOTALL).lower()
    for linked in ("<script src", "<link", "<img", "<iframe", "@import", "url(", "href=", "src="):
        assert linked not in markup
    assert "&lt;/script&gt;" in text  # the note's text, escaped


def test_report_writes_the_page_unless_no_html(synthetic, tmp_path, capsys):
    folder = write_synthetic(tmp_path / "in")
    assert main([str(folder), "--out", str(tmp_path / "a"), "--no-plots"]) == 0
    assert f"{tmp_path / 'a' / 'REPORT.html'}" in capsys.readouterr().out.splitlines()[-1]
    assert main([str(folder), "--out", str(tmp_path / "b"), "--no-plots", "--no-html"]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["REPORT.md", "report.csv"]
    assert "--no-html" in build_parser().format_help()


# --------------------------------------------------------------------------- in a browser


def _find(variable: str, *names: str) -> str | None:
    return os.environ.get(variable) or next(filter(None, map(shutil.which, names)), None)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium under chromedriver, every request to another origin blocked.

    Missing selenium or Chromium skips the browser tests, except where
    FASHION_BENCH_REQUIRE_BROWSER is set (tox -e browser): there it fails them.
    """
    missing = pytest.fail if os.environ.get("FASHION_BENCH_REQUIRE_BROWSER") else pytest.skip
    try:
        from selenium import webdriver
    except ImportError:
        missing("selenium is not installed (tox -e browser)")
    binary = _find("CHROMIUM_BINARY", "chromium", "chromium-browser")
    driver_path = _find("CHROMEDRIVER", "chromedriver")
    if not binary or not driver_path:
        missing("no Chromium or chromedriver found (apt-get install chromium "
                "chromium-driver; tox -e browser)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000",
                     "--disable-background-networking", "--no-first-run"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setBlockedURLs", {
            "urls": ["http://*", "https://*", "ws://*", "wss://*", "ftp://*"]})
        yield driver
    finally:
        driver.quit()


def _open(driver, path: Path) -> dict:
    """Load ``path`` from file://, wait for the charts; the console and the requests seen."""
    driver.get_log("browser"), driver.get_log("performance")  # reading a log empties it
    driver.get(path.as_uri())
    _wait(driver, lambda: driver.execute_script("return document.body.dataset.ready") == "1")
    events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    return {"console": driver.get_log("browser"),
            "requests": {e["params"]["request"]["url"] for e in events
                         if e["method"] == "Network.requestWillBeSent"}}


def _wait(driver, condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the page did not finish drawing"
        time.sleep(0.05)


def _rerender(driver, action) -> None:
    """Do ``action`` (a user input) and wait until the page drew again."""
    before = driver.execute_script("return Number(document.body.dataset.renders)")
    action()
    _wait(driver, lambda: driver.execute_script(
        "return Number(document.body.dataset.renders) > arguments[0] "
        "&& document.body.dataset.ready === '1'", before))


def _count(driver, selector: str) -> int:
    return driver.execute_script("return document.querySelectorAll(arguments[0]).length",
                                 selector)


def _points(driver, chart: str) -> int:
    """Point marks drawn in a chart (legend symbols not counted)."""
    return _count(driver, f"#chart-{chart} .mark-symbol.role-mark path")


def _screenshot(driver, path: Path) -> None:
    """The whole page, beyond the window, as PNG."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def _severe(console: list[dict]) -> list[str]:
    return [entry["message"] for entry in console if entry["level"] == "SEVERE"]


@browser_only
def test_page_opens_offline_and_draws_every_chart(browser, synthetic, synthetic_page):
    seen = _open(browser, synthetic_page)
    assert _severe(seen["console"]) == []
    assert seen["requests"] == {synthetic_page.as_uri()}
    _, selected = synthetic
    throughput = selected[selected["suite"].isin(["train", "inference"])]
    rings = int(throughput["contended"].fillna(False).astype(bool).sum())
    assert _points(browser, "throughput") == len(throughput) + rings
    for chart in CHARTS:
        assert _points(browser, chart) > 0, f"chart {chart} drew no points"
    assert _count(browser, "#chart-throughput .mark-rule.role-mark line") > 0  # error bars
    legends = browser.find_element("id", "chart-throughput").text
    assert "hollow: stopped on the budget" in legends and "contended / concurrent" in legends
    assert _count(browser, "#summary tbody tr") == len(summary_rows(selected))
    verdicts = browser.find_elements("css selector", "#verdicts td.verdict")
    assert [v.get_attribute("class").split()[-1] for v in verdicts] == [
        "verdict-faster", "verdict-slower", "verdict-same", "verdict-undecided"]
    assert browser.find_element("css selector", "#verdicts td.verdict-faster") \
        .value_of_css_property("color") != \
        browser.find_element("css selector", "#verdicts td.verdict-slower") \
        .value_of_css_property("color")
    _screenshot(browser, synthetic_page.parent / "report-page.png")


@browser_only
def test_hovering_a_point_shows_where_it_came_from(browser, synthetic_page):
    from selenium.webdriver.common.action_chains import ActionChains

    _open(browser, synthetic_page)
    point = browser.find_element("css selector", "#chart-tta .mark-symbol.role-mark path")
    ActionChains(browser).move_to_element(point).perform()
    _wait(browser, lambda: browser.execute_script(
        "const t = document.getElementById('vg-tooltip-element');"
        "return !!t && t.classList.contains('visible')"), 5)
    tip = browser.find_element("id", "vg-tooltip-element").text
    for field in ("run file", "commit", "stop reason", "99% interval"):
        assert field in tip
    assert ".json" in tip


@browser_only
def test_selector_filters_charts_and_tables(browser, synthetic_page):
    from selenium.webdriver.support.ui import Select

    _open(browser, synthetic_page)
    before = {chart: _points(browser, chart) for chart in ("throughput", "tta", "peak")}
    rows = _count(browser, "#summary tbody tr")
    machine = Select(browser.find_element("id", "filter-label"))
    _rerender(browser, lambda: machine.select_by_value(f"{INTEL}/gpu:0"))
    for chart, count in before.items():
        assert 0 < _points(browser, chart) < count, chart
    assert 0 < _count(browser, "#summary tbody tr") < rows
    assert _count(browser, "#verdicts tbody tr") == 0  # no verdict names the GPU
    assert "No verdicts for the current filters" in browser.find_element("id", "verdicts").text
    model = Select(browser.find_element("id", "filter-model"))
    _rerender(browser, lambda: model.select_by_value("cnn"))
    assert _count(browser, "#summary tbody tr") == 1
    _rerender(browser, lambda: browser.find_element("id", "reset").click())
    assert _points(browser, "throughput") == before["throughput"]


@browser_only
def test_a_fleets_long_table_shows_its_first_rows_and_a_button_for_the_rest(
        browser, synthetic, tmp_path):
    results, selected = synthetic
    many = [dict(row, **{"machine/device": f"fleet-{n:03d}/cpu"})
            for n in range(40) for row in summary_rows(selected)[:2]]  # 80 rows
    path = page.write_page(tmp_path, selected, many, verdict_rows(), results.runs,
                           "Fleet report", [], write_atomic, history_frame=results.benchmarks)
    _open(browser, path)
    assert _count(browser, "#summary tbody tr") == 60
    button = browser.find_element("css selector", "#summary button.more")
    assert button.text.startswith("show all 80 rows (20 more not shown")
    button.click()
    _wait(browser, lambda: _count(browser, "#summary tbody tr") == 80, 5)
    assert not browser.find_elements("css selector", "#summary button.more")
    assert _count(browser, "#verdicts tbody tr") == 4  # under the limit: no button
    assert not browser.find_elements("css selector", "#verdicts button.more")


@browser_only
def test_search_finds_a_case(browser, synthetic_page):
    _open(browser, synthetic_page)
    box = browser.find_element("id", "search")
    _rerender(browser, lambda: box.send_keys("b512"))
    # mlp-*-b512-fp32-xla: AMD's CPU, Intel's CPU and GPU, one point each.
    assert _points(browser, "throughput") == 3
    assert {row.text.split()[1] for row in browser.find_elements(
        "css selector", "#summary tbody tr")} == {"mlp-cpu-b512-fp32-xla", "mlp-gpu0-b512-fp32-xla"}
    assert [row.text.split()[0] for row in browser.find_elements(
        "css selector", "#verdicts tbody tr")] == [f"{INTEL}/cpu"]
    assert "b512" in browser.find_element("id", "history-case").get_attribute("value")
    assert "Nothing to show" in browser.find_element("id", "chart-speedup").text


@browser_only
def test_sorting_the_summary(browser, synthetic_page):
    _open(browser, synthetic_page)
    header = next(th for th in browser.find_elements("css selector", "#summary th")
                  if th.text.startswith("samples/s"))

    def column() -> list[float]:
        return [float(td.text) for td in browser.find_elements(
            "css selector", "#summary tbody td:last-child")]

    header.click()
    assert column() == sorted(column()) and len(column()) > 3
    header = next(th for th in browser.find_elements("css selector", "#summary th")
                  if th.text.startswith("samples/s"))
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    assert column() == sorted(column(), reverse=True)


@browser_only
@pytest.mark.skipif(not COMMITTED.is_dir(), reason="no committed results/ folder")
def test_page_over_the_committed_results(browser, tmp_path, capsys):
    """The page over results/ (four machines): under 2 MB, no error, every chart drawn,
    no verdicts or summary yet said so; its screenshot in /tmp/report-page.png."""
    assert main([str(COMMITTED), "--out", str(tmp_path), "--no-plots"]) == 0
    capsys.readouterr()
    path = tmp_path / page.REPORT_HTML
    assert path.stat().st_size < 2_000_000
    seen = _open(browser, path)
    assert _severe(seen["console"]) == [] and seen["requests"] == {path.as_uri()}
    for chart in CHARTS:
        assert _points(browser, chart) > 0, f"chart {chart} drew no points"
    _screenshot(browser, SCREENSHOT)


def test_the_runs_list_shows_the_newest_and_the_data_carries_no_run_list(synthetic_page):
    records = [{"machine_id": f"m{i % 3}", "run": f"r{i}", "status": "complete",
                "commit": None, "datetime": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}"}
               for i in range(250)]
    records.sort(key=lambda r: (r["machine_id"], r["datetime"]))
    newest = page.newest_runs(records)
    assert len(newest) == page.MAX_RUNS_LISTED
    assert {r["run"] for r in newest} == {f"r{i}" for i in range(50, 250)}
    assert newest == [r for r in records if r in newest]  # in their order
    text = synthetic_page.read_text(encoding="utf-8")
    data = json.loads(text.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    assert "runs" not in data and "Runs read (" in text  # the list is HTML, not data
