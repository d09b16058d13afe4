/* REPORT.html's own script: filters, sortable tables and the Vega-Lite chart specs.
 * Reads the JSON in #report-data (written by bench/report/page.py); needs vega, vegaLite
 * and vegaEmbed (inlined before it). Every chart and table is rebuilt from the filtered
 * data on each change of a selector or the case search. Charts use the SVG renderer, so
 * their marks are DOM elements (the browser tests count them). */
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const FILTERS = ["label", "model", "backend", "precision"];
  const state = { label: "", model: "", backend: "", precision: "", search: "" };
  const views = {};
  const BUDGET = "stopped on the budget", MEASURED = "measured", MISSED = "target not reached";
  const SUITES = ["train", "inference", "latency", "tta", "compile", "scaling", "baseline"];
  const SHAPES = ["circle", "square", "triangle-up", "diamond", "cross", "triangle-down"];

  const unique = (values) => [...new Set(values.filter((v) => v !== null && v !== undefined))]
    .sort((a, b) => String(a).localeCompare(String(b), undefined, { numeric: true }));
  const everything = [...DATA.points, ...DATA.history];
  const labels = unique(everything.map((r) => r.label).concat(
    DATA.verdicts.flatMap((v) => [v.label, v.reference])));
  const models = unique(everything.map((r) => r.model).concat(DATA.verdicts.map((v) => v.model)));
  const color = { field: "label", type: "nominal", title: "machine/device",
    scale: { domain: labels, scheme: "tableau10" } };
  const shape = { field: "model", type: "nominal", title: "model",
    scale: { domain: models, range: SHAPES } };

  /* A row passes when each selector is "all", names its value, or does not apply (the row
   * has no such field; a verdict passes the machine/device selector by its reference too),
   * and the search is empty or found in one of its case ids (null: no case to search). */
  function matches(row, cases) {
    const search = state.search.trim().toLowerCase();
    return FILTERS.every((key) => !state[key] || !(key in row) || row[key] === state[key]
      || (key === "label" && row.reference === state.label))
      && (!search || cases === null
        || cases.some((c) => String(c || "").toLowerCase().includes(search)));
  }
  const shown = (rows) => rows.filter((r) => matches(r, [r.case, r.base_case]));

  /* ---- text ---- */
  function si(value) {
    if (value === null || value === undefined) return "—";
    const abs = Math.abs(value);
    for (const [limit, suffix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (abs >= limit) return (value / limit).toPrecision(3) + suffix;
    }
    return Number(value).toPrecision(3);
  }
  const seconds = (s) => s === null || s === undefined ? "—"
    : s < 0.1 ? (s * 1000).toPrecision(3) + " ms" : s.toPrecision(3) + " s";
  const percent = (h) => h === null || h === undefined ? "—" : "±" + (100 * h).toFixed(1) + "%";
  const flags = (r) => [r.contended && "contended", r.concurrent && "concurrent"]
    .filter(Boolean).join(", ") || "no";
  function decorate(r) {
    return Object.assign({}, r, {
      kind: r.budget ? BUDGET : MEASURED, spoiled: r.contended || r.concurrent,
      flags: flags(r), interval: percent(r.ci_halfwidth), stop: r.stop || "—",
      commit: r.commit || "—", setup: r.model + " b" + r.batch_size + " " + r.precision
        + (r.xla ? (r.backend === "torch" ? " torch.compile" : " XLA") : "") + " " + r.backend,
    });
  }
  const tip = (field, title, format) => Object.assign({ field, title }, format ? { format } : {});
  const PROVENANCE = [tip("run", "run file"), tip("commit", "commit"), tip("stop", "stop reason"),
    tip("flags", "contended/concurrent")];

  /* ---- chart building blocks ---- */
  /* The points of a chart (x/y given): filled where measured, hollow where stopped on the
   * budget (or, time to accuracy, where the target was not reached), a red ring around
   * contended/concurrent points; the hollow and ring layers add their legend entries. */
  function markLayers(rows, x, y, tooltip) {
    const point = (filled) => ({ type: "point", filled, size: 70, strokeWidth: 1.6,
      opacity: filled ? 0.85 : 1 });
    const layers = [{ mark: point(true), transform: [{ filter: `datum.kind === "${MEASURED}"` }],
      encoding: { x, y, color, shape, tooltip } }];
    for (const kind of [BUDGET, MISSED].filter((k) => rows.some((r) => r.kind === k))) {
      layers.push({ mark: point(false), transform: [{ filter: `datum.kind === "${kind}"` }],
        encoding: { x, y, color, shape, tooltip, opacity: { datum: kind === BUDGET
          ? "hollow: stopped on the budget" : "hollow: target not reached",
        title: "marks", scale: { range: [1] } } } });
    }
    if (rows.some((r) => r.spoiled)) {
      layers.push({ mark: { type: "point", shape: "circle", filled: false, size: 320,
        strokeWidth: 2 }, transform: [{ filter: "datum.spoiled" }],
        encoding: { x, y, stroke: { datum: "ring: contended / concurrent", title: null,
          scale: { range: ["#d62728"] } }, tooltip } });
    }
    return layers;
  }
  /* An error bar from field low to field high along x or y; none when no row has one. */
  const bars = (rows, low, high, along, other) => rows.some((r) => r[low] !== null
    && r[low] !== undefined) ? [{ mark: { type: "rule", opacity: 0.7 },
      transform: [{ filter: `isValid(datum.${low})` }], encoding: { [along]: { field: low,
        type: "quantitative" }, [along + "2"]: { field: high }, [along === "x" ? "y" : "x"]: other,
      color } }] : [];
  /* Batch sizes on a log-2 axis, every power of two (every other one: narrow charts). */
  const batchAxis = (every) => ({ field: "batch_size", type: "quantitative", title: "batch size",
    scale: { type: "log", base: 2, nice: false, padding: 12 }, axis: { format: "d", values: Array.from({ length: 17 },
      (_, i) => 2 ** i).filter((_, i) => i % every === 0) } });
  const logY = (field, title, format) => ({ field, type: "quantitative", title,
    scale: { type: "log" }, axis: Object.assign({ tickCount: 6 }, format ? { format } : {}) });

  function throughputSpec(rows) {
    const x = batchAxis(1);
    const y = logY("samples_per_second", "samples/s", "~s");
    const tooltip = [tip("case", "case"), tip("label", "machine/device"), tip("suite", "suite"),
      tip("setup", "setup"), tip("samples_per_second", "samples/s", ",.4~s"),
      tip("interval", "99% interval"), ...PROVENANCE];
    return { facet: { column: { field: "suite", type: "nominal", title: null,
      sort: ["train", "inference"] } }, data: { values: rows },
      spec: { width: 430, height: 300, layer: [
        { mark: { type: "line", opacity: 0.45, strokeWidth: 1 },
          encoding: { x, y, color, detail: { field: "series" }, order: { field: "batch_size" } } },
        ...bars(rows, "sps_low", "sps_high", "y", x), ...markLayers(rows, x, y, tooltip)] },
      resolve: { scale: { x: "shared", y: "shared" } } };
  }

  function speedupSpec(rows) {
    const x = { field: "ratio", type: "quantitative", title: "speedup (throughput on over off)",
      scale: { type: "log" }, axis: { format: "~g", tickCount: 6 } };
    const y = { field: "pair", type: "nominal", title: null, sort: { field: "pair" },
      axis: { labelLimit: 460 } };
    const tooltip = [tip("case", "case"), tip("base_case", "against"), tip("label", "machine/device"),
      tip("ratio", "speedup", ".3f"), tip("interval", "99% interval"), tip("sps", "samples/s", ",.4~s"),
      tip("base_sps", "samples/s of the twin", ",.4~s"), tip("run", "run file"),
      tip("base_run", "twin's run file"), tip("commit", "commit"), tip("stop", "stop reason"),
      tip("base_stop", "twin's stop reason"), tip("flags", "contended/concurrent")];
    return { data: { values: rows }, facet: { row: { field: "comparison", type: "nominal",
      title: null, sort: ["fp16 over fp32", "bf16 over fp32"], header: { labelAngle: 0,
        labelAlign: "left", labelAnchor: "start", labelFontWeight: "bold", labelOrient: "top" } } },
      spec: { width: 420, height: { step: 15 }, layer: [
        { mark: { type: "rule", color: "#555", strokeDash: [3, 3] }, encoding: { x: { datum: 1 } } },
        ...bars(rows, "low", "high", "x", y), ...markLayers(rows, x, y, tooltip)] },
      resolve: { scale: { x: "independent", y: "independent" } } };
  }

  function ttaSpec(rows) {
    const x = logY("tta_seconds", "seconds to the target accuracy");
    const y = { field: "row", type: "nominal", title: null, sort: { field: "row" },
      axis: { labelLimit: 460 } };
    const tooltip = [tip("case", "case"), tip("label", "machine/device"),
      tip("target_accuracy", "target accuracy"), tip("reached_text", "reached"),
      tip("tta_text", "time"), tip("interval", "99% interval"), ...PROVENANCE];
    return { data: { values: rows }, width: 520, height: { step: 16 }, layer: [
      ...bars(rows, "time_low", "time_high", "x", y), ...markLayers(rows, x, y, tooltip)] };
  }

  function peakSpec(rows) {
    const x = batchAxis(2);
    const y = { field: "peak_share", type: "quantitative", title: "share of calibrated peak",
      axis: { format: "%" } };
    const tooltip = [tip("case", "case"), tip("label", "machine/device"), tip("suite", "suite"),
      tip("setup", "setup"), tip("peak_share", "share of peak", ".1%"),
      tip("interval", "99% interval"), ...PROVENANCE];
    return { facet: { column: { field: "suite", type: "nominal", title: null,
      sort: SUITES } }, data: { values: rows },
      spec: { width: 280, height: 240, layer: [
        { mark: { type: "rule", color: "#555", strokeDash: [3, 3] }, encoding: { y: { datum: 1 } } },
        ...bars(rows, "peak_low", "peak_high", "y", x), ...markLayers(rows, x, y, tooltip)] } };
  }

  function historySpec(rows) {
    const x = { field: "commit_time", type: "temporal", title: "commit date (UTC)",
      scale: { type: "utc", padding: 24 }, axis: { format: "%Y-%m-%d %H:%M", labelAngle: -20 } };
    const y = { field: "median", type: "quantitative", title: "median time per round (s)",
      scale: { zero: false } };
    const tooltip = [tip("commit", "commit"), tip("case", "case"), tip("label", "machine/device"),
      tip("median_text", "median time per round"), tip("runs", "runs at this commit"),
      tip("interval", "band (1 run: 99% interval; more: fastest – slowest)"),
      tip("run", "newest run file"), tip("stop", "stop reason"), tip("flags", "contended/concurrent")];
    return { data: { values: rows }, width: 760, height: 280, layer: [
      { mark: { type: "text", dy: -6, fontSize: 10, color: "#555" },
        transform: [{ aggregate: [{ op: "count", as: "runs" }], groupby: ["commit", "commit_time"] }],
        encoding: { x, y: { value: 0 }, text: { field: "commit" } } },
      { mark: { type: "line", opacity: 0.6 }, encoding: { x, color,
        y: { aggregate: "median", field: "median", type: "quantitative" } } },
      ...bars(rows, "time_low", "time_high", "y", x), ...markLayers(rows, x, y, tooltip)] };
  }

  /* ---- rendering ---- */
  function draw(name, rows, spec, empty) {
    const element = document.getElementById("chart-" + name);
    if (views[name]) { views[name].finalize(); delete views[name]; }
    element.textContent = "";
    if (!rows.length) {
      element.innerHTML = '<p class="empty"></p>';
      element.firstChild.textContent = empty;
      return Promise.resolve();
    }
    spec.$schema = "https://vega.github.io/schema/vega-lite/v5.json";
    spec.config = { font: "system-ui, sans-serif", legend: { orient: "right", labelLimit: 320,
      symbolOpacity: 1 }, axis: { labelFontSize: 11 } };
    return vegaEmbed(element, spec, { renderer: "svg", actions: false, logLevel: vega.Warn })
      .then((result) => { views[name] = result.view; })
      .catch((error) => { console.error("chart " + name + ": " + error); });
  }

  /* The history of one case on one machine/device: its key, as the case selector shows it. */
  const historyKey = (r) => r.suite + " / " + r.case + " on " + r.label;
  /* The keys in suite order; first the one measured at the most commits. */
  function historyKeys(rows) {
    const commits = {};
    for (const r of rows) (commits[historyKey(r)] ||= new Set()).add(r.commit);
    const rank = (key) => SUITES.indexOf(key.split(" / ")[0]) >>> 0;
    const keys = Object.keys(commits).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    const best = keys.slice().sort((a, b) => commits[b].size - commits[a].size)[0];
    return best ? [best, ...keys.filter((k) => k !== best)] : [];
  }

  function render() {
    const points = shown(DATA.points).map(decorate);
    const throughput = points.filter((r) => ["train", "inference"].includes(r.suite)
      && r.samples_per_second > 0).map((r) => Object.assign(r, {
      series: [r.label, r.suite, r.model, r.backend, r.precision, r.xla].join("|") }));
    const speedups = shown(DATA.speedups).map((r) => Object.assign(decorate(r), {
      pair: r.suite + " · " + r.base_case + " → "
        + (r.comparison.endsWith("on over off") ? r.setting : r.precision),
      interval: r.low === null ? "—" : r.low.toFixed(3) + " – " + r.high.toFixed(3) }));
    const tta = points.filter((r) => r.suite === "tta").map((r) => Object.assign(r, {
      row: r.case, reached_text: r.reached ? "yes" : "no",
      tta_seconds: r.reached ? r.seconds_to_accuracy : r.median,
      kind: r.reached ? r.kind : MISSED })).filter((r) => r.tta_seconds > 0)
      .map((r) => Object.assign(r, { tta_text: seconds(r.tta_seconds) }));
    const peak = points.filter((r) => r.peak_share > 0);
    const history = shown(DATA.history).map(decorate).map((r) => Object.assign(r, {
      median_text: seconds(r.median) }));
    const select = document.getElementById("history-case");
    const keys = historyKeys(history);
    const wanted = keys.includes(select.value) ? select.value : keys[0] || "";
    select.innerHTML = "";
    for (const key of keys) select.add(new Option(key, key, false, key === wanted));
    const one = history.filter((r) => historyKey(r) === wanted);
    const cases = new Set(points.map((r) => r.label + " " + r.case));
    document.getElementById("shown").textContent = cases.size + " of "
      + new Set(DATA.points.map((r) => r.label + " " + r.case)).size + " machine/device cases shown";
    renderTables();
    const empty = "Nothing to show for the current filters.";
    const body = document.body;
    body.dataset.ready = "0";
    return Promise.all([
      draw("throughput", throughput, throughputSpec(throughput), empty),
      draw("speedup", speedups, speedupSpec(speedups), speedups.length || !DATA.speedups.length
        ? "No pairs of cases that differ only in precision or in XLA / torch.compile." : empty),
      draw("tta", tta, ttaSpec(tta), "No time-to-accuracy results for the current filters."),
      draw("peak", peak, peakSpec(peak), "No shares of peak for the current filters."),
      draw("history", one, historySpec(one), DATA.history.length ? empty
        : "No case was measured on one machine/device at more than one commit."),
    ]).then(() => { body.dataset.ready = "1";
      body.dataset.renders = String(Number(body.dataset.renders || 0) + 1); });
  }

  /* ---- tables ---- */
  function sortKey(value) {
    if (typeof value === "number") return value;
    if (typeof value === "boolean") return value ? 1 : 0;
    const text = String(value === null || value === undefined ? "" : value).trim();
    const number = text.replace(/,/g, "").match(/^[-+]?\d*\.?\d+(?:e[-+]?\d+)?\s*([kMG]?)/i);
    if (number && text !== "") {
      const scale = { k: 1e3, M: 1e6, G: 1e9 }[number[1]] || 1;
      return parseFloat(number[0]) * scale;
    }
    return text;
  }
  function compare(a, b) {
    const empty = (v) => v === "" || v === "—";
    if (empty(a) || empty(b)) return empty(a) - empty(b);
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }
  const ROW_LIMIT = 60;  // rows a table shows before its "show all" button
  /* A table with clickable headers: the first click sorts ascending, the next descending. */
  function table(element, columns, rows, cell, emptyText) {
    element.textContent = "";
    if (!rows.length) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = emptyText;
      element.appendChild(p);
      return;
    }
    const sorting = element.sorting || { column: -1, direction: 1 };
    const t = document.createElement("table");
    const head = t.createTHead().insertRow();
    columns.forEach((name, index) => {
      const th = document.createElement("th");
      th.textContent = name;
      th.tabIndex = 0;
      if (sorting.column === index) {
        th.setAttribute("aria-sort", sorting.direction > 0 ? "ascending" : "descending");
      }
      th.addEventListener("click", () => {
        element.sorting = { column: index,
          direction: sorting.column === index ? -sorting.direction : 1 };
        table(element, columns, rows, cell, emptyText);
      });
      head.appendChild(th);
    });
    const ordered = rows.slice();
    if (sorting.column >= 0) {
      ordered.sort((a, b) => sorting.direction * compare(sortKey(a[sorting.column]),
        sortKey(b[sorting.column])));
    }
    const body = t.createTBody();
    // Over a fleet a table holds thousands of rows: the first ROW_LIMIT (in the order
    // chosen), then a button for the rest; the filters narrow what there is to show.
    const limit = element.showAll ? ordered.length : ROW_LIMIT;
    for (const row of ordered.slice(0, limit)) {
      const tr = body.insertRow();
      row.forEach((value, index) => cell(tr.insertCell(), value, columns[index]));
    }
    element.appendChild(t);
    if (ordered.length > limit) {
      const more = document.createElement("button");
      more.type = "button";
      more.className = "more";
      more.textContent = `show all ${ordered.length} rows (${ordered.length - limit} more ` +
        "not shown; the filters above narrow them)";
      more.addEventListener("click", () => {
        element.showAll = true;
        table(element, columns, rows, cell, emptyText);
      });
      element.appendChild(more);
    }
  }
  function plainCell(td, value) {
    td.textContent = value === null || value === undefined ? "—" : String(value);
    if (typeof value === "number") td.className = "number";
  }
  const SUMMARY_KEYS = { "machine/device": "label", machine: "label", label: "label",
    model: "model", backend: "backend", precision: "precision", case: "case" };
  function renderTables() {
    const columns = DATA.summary.columns;
    const keyed = DATA.summary.rows.filter((row) => {
      const record = {};
      columns.forEach((c, i) => { if (SUMMARY_KEYS[c.toLowerCase()]) {
        record[SUMMARY_KEYS[c.toLowerCase()]] = row[i]; } });
      return matches(record, "case" in record ? [record.case] : null);
    });
    table(document.getElementById("summary"), columns, keyed, plainCell,
      columns.length ? "No summary rows for the current filters." : "No summary rows.");
    const verdicts = shown(DATA.verdicts);
    // The setting (case id without its device) says model, batch, precision, XLA and
    // backend; the reference is one for the page and stated above the table.
    const names = ["machine/device", "suite", "setting", "verdict", "ratio", "99% interval",
      "runs / reference runs", "basis"];
    const rows = verdicts.map((v) => [v.label, v.suite, v.case, v.verdict, v.ratio,
      v.low === null ? "—" : v.low.toPrecision(3) + " – " + v.high.toPrecision(3),
      v.runs + " / " + v.reference_runs, v.basis]);
    table(document.getElementById("verdicts"), names, rows, (td, value, column) => {
      if (column === "ratio" && typeof value === "number") {
        td.textContent = value.toPrecision(3) + "×";
        td.className = "number";
      } else if (column === "verdict") {
        td.textContent = value || "—";
        td.className = "verdict verdict-" + String(value || "none").replace(/[^a-z]/g, "");
      } else plainCell(td, value);
    }, DATA.verdicts.length ? "No verdicts for the current filters."
      : "No cross-machine verdicts: no case was measured on two machines/devices.");
  }

  /* ---- controls ---- */
  function setUp() {
    const values = { label: labels, model: models,
      backend: unique(everything.map((r) => r.backend).concat(DATA.verdicts.map((v) => v.backend))),
      precision: unique(everything.map((r) => r.precision).concat(
        DATA.verdicts.map((v) => v.precision))) };
    for (const key of FILTERS) {
      const select = document.getElementById("filter-" + key);
      select.add(new Option("all", ""));
      for (const value of values[key]) select.add(new Option(value, value));
      select.addEventListener("change", () => { state[key] = select.value; render(); });
    }
    const list = document.getElementById("case-ids");
    for (const id of unique(everything.map((r) => r.case))) list.appendChild(new Option(id));
    const search = document.getElementById("search");
    let timer = null;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { state.search = search.value; render(); }, 150);
    });
    document.getElementById("history-case").addEventListener("change", render);
    document.getElementById("reset").addEventListener("click", () => {
      for (const key of FILTERS) { state[key] = ""; document.getElementById("filter-" + key).value = ""; }
      state.search = search.value = "";
      render();
    });
    render();
  }
  setUp();
})();
