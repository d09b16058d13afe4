"""Fleet scale: the results index, run ids that never collide, shards and their merge."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness import cases as matrix
from bench.harness import shards
from bench.report import index as index_module
from bench.report.cli import main
from bench.report.index import IndexUnavailable, ResultsIndex
from bench.report.loader import WarningLog, load_results
from bench.store.results import RUN_ID, save_run

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "results"
OUTPUTS = ("REPORT.md", "report.csv", "REPORT.html")

pytestmark = pytest.mark.backend_free


def committed_copy(tmp_path: Path) -> Path:
    """The committed result files (not the report) copied: a test never writes beside them."""
    target = tmp_path / "results"
    for path in COMMITTED.rglob("*.json"):
        destination = target / path.relative_to(COMMITTED)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
    return target


def report(capsys, results: Path, out: Path, *options) -> dict[str, bytes]:
    code = main([str(results), "--out", str(out), "--no-plots", *map(str, options)])
    capsys.readouterr()
    assert code == 0
    return {name: (out / name).read_bytes() for name in OUTPUTS}


# --------------------------------------------------------------------------- the index

def test_report_with_and_without_the_index_is_the_same(tmp_path, capsys):
    results = committed_copy(tmp_path)
    files = report(capsys, results, tmp_path / "files", "--no-index")
    index = tmp_path / "index.duckdb"
    first = report(capsys, results, tmp_path / "built", "--index", index)  # builds it
    again = report(capsys, results, tmp_path / "read", "--index", index)  # reads it
    for name in OUTPUTS:
        assert first[name] == files[name], name
        assert again[name] == files[name], name
    with ResultsIndex(index) as held:
        assert held.stats()["files"] == len(list(results.rglob("*.json")))


def test_index_notices_new_changed_and_removed_files(tmp_path, capsys):
    results = committed_copy(tmp_path)
    index = tmp_path / "index.duckdb"
    folder = next(p for p in sorted(results.iterdir()) if len(list(p.glob("*.json"))) > 2)
    spare = sorted(folder.glob("*.json"))[-1]
    kept = spare.read_bytes()
    spare.unlink()
    with ResultsIndex(index) as held:
        load_results([results], WarningLog(), index=held)
        total = held.stats()["files"]
    (folder / spare.name).write_bytes(kept)  # a new run
    document = json.loads(kept)
    changed = sorted(folder.glob("*.json"))[0]
    other = json.loads(changed.read_text())
    other["benchmarks"] = other["benchmarks"][:1]  # a changed file: fewer rows
    changed.write_text(json.dumps(other))
    gone = sorted(folder.glob("*.json"))[1]
    gone.unlink()  # a removed run
    with ResultsIndex(index) as held:
        from bench.store.results import result_files_with_keys
        counts = held.update(result_files_with_keys([results]), [results])
        assert counts == {"added": 1, "changed": 1, "removed": 1, "unchanged": total - 2}
        by_index = load_results([results], WarningLog(), index=held)
    by_files = load_results([results], WarningLog())
    assert by_index.runs == by_files.runs
    assert by_index.benchmarks.equals(by_files.benchmarks)
    assert len(by_files.benchmarks[by_files.benchmarks["run"] == changed.name]) == 1
    assert document["benchmarks"]  # the new run's rows are there
    assert (by_index.benchmarks["run"] == spare.name).sum() == len(
        [b for b in document["benchmarks"] if b["extra_info"].get("status", "ok") == "ok"])


def test_index_rebuilds_when_the_code_that_reads_files_changes(tmp_path, monkeypatch):
    results = committed_copy(tmp_path)
    said = []
    with ResultsIndex(tmp_path / "i.duckdb", say=said.append) as held:
        load_results([results], WarningLog(), index=held)
    monkeypatch.setattr(index_module, "code_version", lambda: "another")
    with ResultsIndex(tmp_path / "i.duckdb", say=said.append) as held:
        assert held.stats()["files"] == 0
    assert any("rebuilding" in line for line in said)


def test_the_plans_history_from_the_index_is_the_files_and_reads_none_again(
        tmp_path, monkeypatch):
    from bench.harness import plan as planner

    results = committed_copy(tmp_path)
    folders = sorted(p for p in results.iterdir() if p.is_dir())
    by_files = {folder.name: planner.history_seconds(folder) for folder in folders}
    assert sum(map(len, by_files.values())) > 10  # committed runs record case_seconds
    with ResultsIndex(tmp_path / "i.duckdb") as held:
        for folder in folders:  # first use: each machine's files read into the index
            assert planner.history_seconds(folder, held) == pytest.approx(by_files[folder.name])
        # Once indexed, the plan's history reads no result file.
        monkeypatch.setattr(planner, "read_result", lambda *a, **k: pytest.fail("read"))
        monkeypatch.setattr(index_module.loader, "parse_file", lambda *a: pytest.fail("parse"))
        for folder in folders:
            assert planner.history_seconds(folder, held) == pytest.approx(by_files[folder.name])
        assert planner.history_seconds(tmp_path / "no-such-machine", held) == {}
    monkeypatch.undo()

    class Broken:  # an index that fails: the files are read, and a note says so
        said: list[str] = []

        def say(self, text):
            self.said.append(text)

        def case_seconds(self, folder):
            raise OSError("disk full")

    broken = Broken()
    assert planner.history_seconds(folders[0], broken) == by_files[folders[0].name]
    assert "disk full" in broken.said[0]


def test_one_writer_a_second_process_waits_then_reads_the_files(tmp_path, capsys,
                                                                monkeypatch):
    results = committed_copy(tmp_path)
    index = tmp_path / "index.duckdb"
    ResultsIndex(index).close()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
        " time.sleep(60)"), str(index)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(IndexUnavailable, match="busy"):
            ResultsIndex(index, wait=0.5, say=lambda text: None)
        assert time.monotonic() - started < 10
        # The report does not fail: it says so and reads the files.
        monkeypatch.setattr(index_module, "WAIT_SECONDS", 0.5)
        code = main([str(results), "--out", str(tmp_path / "out"), "--no-plots", "--no-html",
                     "--index", str(index)])
        _, err = capsys.readouterr()
        assert code == 0 and "not using the results index" in err and "busy" in err
        assert (tmp_path / "out" / "REPORT.md").is_file()
    finally:
        holder.kill()
        holder.wait()


# --------------------------------------------------------------------------- run ids

def _save_many(args: tuple[str, str, int]) -> list[str]:
    root, template, count = args
    document = json.loads(Path(template).read_text())
    machine_id = document["machine_info"]["fashion_bench"]["machine_id"]
    return [str(save_run(document, root, machine_id)) for _ in range(count)]


def test_two_sessions_writing_into_one_folder_at_once_both_read(tmp_path):
    template = sorted(COMMITTED.rglob("*.json"))[0]
    root = tmp_path / "results"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        written = pool.map(_save_many, [(str(root), str(template), 15)] * 2)
    paths = [Path(p) for batch in written for p in batch]
    assert len(set(paths)) == 30 and all(RUN_ID.match(p.stem) for p in paths)
    loaded = load_results([root], WarningLog())
    assert len(loaded.runs) == 30
    assert loaded.benchmarks["run"].nunique() == 30


# --------------------------------------------------------------------------- shards

def _full_matrix() -> list[matrix.Case]:
    return matrix.build_matrix("full", ["cpu", "gpu:0"], "tensorflow")


@pytest.mark.parametrize("count", [2, 4, 8])
def test_full_matrix_in_shards_each_case_once_and_balanced(count):
    cases = _full_matrix()
    estimates = shards.shard_estimates(cases)
    parts = shards.split(estimates, count)
    ids = [(c.suite, c.id) for part in parts for c in part]
    assert sorted(ids) == sorted((c.suite, c.id) for c in cases) and len(set(ids)) == len(ids)
    loads = [sum(estimates[c] for c in part) for part in parts]
    assert max(loads) <= 1.15 * (sum(loads) / count), loads
    # The same split whatever else the machine has: its CPU cases alone cut alike.
    cpu = [c for c in cases if c.device == "cpu"]
    alone = shards.split(shards.shard_estimates(cpu), count)
    assert [[c for c in part if c.device == "cpu"] for part in parts] == alone


def test_plan_document_lists_every_case_with_its_shard():
    estimates = shards.shard_estimates(_full_matrix())
    document = shards.plan_document(estimates, 4, "full")
    assert document["shards"] == ["1/4", "2/4", "3/4", "4/4"]
    assert sum(p["cases"] for p in document["parts"]) == len(document["cases"]) == len(estimates)
    assert abs(sum(p["estimate_seconds"] for p in document["parts"])
               - document["estimate_seconds"]) < 1


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "a/b", "2/0", "-1/3"])
def test_bad_shard_is_refused(text):
    with pytest.raises(ValueError):
        shards.parse_shard(text)


def test_default_run_group_comes_from_the_scheduler(monkeypatch):
    for names in shards.JOB_ENVS:
        for name in names:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    assert shards.default_run_group([], 8, "full") == "job-4242"
    monkeypatch.setenv("GITHUB_RUN_ID", "77")
    monkeypatch.setenv("GITHUB_RUN_ATTEMPT", "2")
    assert shards.default_run_group([], 8, "full") == "job-77-2"


def _as_shards(folder: Path, machine_dir: Path, group: str, indices: list[int], count: int):
    """Copies of a machine's first runs marked as shards of one run group."""
    folder.mkdir(parents=True)
    for number, path in zip(indices, sorted(machine_dir.glob("*.json")), strict=False):
        document = json.loads(path.read_text())
        document["machine_info"]["fashion_bench"].update(run_group=group, shard=[number, count])
        (folder / path.name).write_text(json.dumps(document))


def test_report_merges_the_shards_of_a_run_and_says_when_one_is_missing(tmp_path):
    machine_dir = COMMITTED / "intel-xeon-2c-6bb9b7"
    _as_shards(tmp_path / "all" / "m", machine_dir, "g1", [1, 2], 2)
    loaded = load_results([tmp_path / "all"], log := WarningLog())
    assert [run.path.name for run in loaded.runs] == ["g1[shards 1,2 of 2]"] and not log.messages
    assert set(loaded.benchmarks["shard"]) == {"1/2", "2/2"}
    assert loaded.benchmarks["run"].nunique() == 1
    assert loaded.runs[0].cases == len(loaded.benchmarks)
    # The run's plan: the shards' estimates and times summed, the longest shard named.
    plans = [json.loads(p.read_text())["machine_info"]["fashion_bench"]["plan"]
             for p in sorted(machine_dir.glob("*.json"))[:2]]
    merged = loaded.runs[0].plan
    assert merged["estimate_seconds"] == pytest.approx(sum(p["estimate_seconds"] for p in plans))
    assert merged["elapsed_seconds"] == pytest.approx(sum(p["elapsed_seconds"] for p in plans))
    assert merged["longest_shard_seconds"] == max(p["elapsed_seconds"] for p in plans)
    from bench.report import lists
    assert "over 2 shards (longest took" in lists.run_rows(loaded.runs)[0]["plan"]
    _as_shards(tmp_path / "part" / "m", machine_dir, "g2", [1, 3], 3)
    loaded = load_results([tmp_path / "part"], log := WarningLog())
    assert [run.path.name for run in loaded.runs] == ["g2[shards 1,3 of 3]"]
    assert len(log.messages) == 1 and "shard(s) 2/3 missing" in log.messages[0]


@pytest.mark.skipif(not os.environ.get("FASHION_BENCH_INDEX"), reason="conftest sets it")
def test_tests_never_touch_the_users_index():
    assert "fashion-bench-index-" in os.environ["FASHION_BENCH_INDEX"]


def test_runs_table_lists_each_machines_newest_runs_and_counts_the_rest():
    import pandas as pd

    from bench.report import lists
    from bench.report.loader import Run

    runs = [Run(Path(f"r/m/{i:04d}.json"), "m", pd.Timestamp(2026, 1, 1, tz="UTC")
                + pd.Timedelta(minutes=i), {}, 1, []) for i in range(25)]
    runs.append(Run(Path("r/n/0001.json"), "n", pd.Timestamp(2026, 1, 2, tz="UTC"), {}, 1, []))
    rows = lists.run_rows(runs)
    assert [r["run"] for r in rows][:2] == ["(+5 older runs not listed)", "0005.json"]
    assert len(rows) == 1 + lists.RUNS_PER_MACHINE + 1 and rows[-1]["machine"] == "n"


def test_detail_tables_show_at_most_max_columns_and_the_summary_all(tmp_path, capsys):
    results = committed_copy(tmp_path)
    full = report(capsys, results, tmp_path / "all", "--max-columns", "0")["REPORT.md"].decode()
    assert full == report(capsys, results, tmp_path / "default")["REPORT.md"].decode()  # < 12
    labels = int(re.search(r"; (\d+) machine/device columns", full)[1])
    assert labels > 2
    text = report(capsys, results, tmp_path / "two", "--max-columns", "2")["REPORT.md"].decode()
    assert f"show 2 of the {labels} machine/device columns (`--max-columns`, 2" in text

    def section(report_text: str, title: str) -> str:
        return report_text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]

    assert section(text, "Summary") == section(full, "Summary")  # every machine/device
    assert section(text, "Verdicts across machines") == section(full, "Verdicts across machines")
    header = next(line for line in section(text, "Training throughput").splitlines()
                  if line.startswith("| model"))
    labels = [c.strip() for c in header.split("|") if c.strip().startswith("amd-")]
    assert labels == ["amd-epyc-2c-5918da/cpu", "amd-epyc-2c-eb454c/cpu"], header
    with pytest.raises(SystemExit) as exited:
        main([str(results), "--out", str(tmp_path / "bad"), "--max-columns", "-1"])
    assert exited.value.code == 2
    assert "'-1' is not a whole number of 0 or more" in capsys.readouterr().err


def test_commit_keeps_the_runs_of_one_commit_and_names_the_others_when_none(tmp_path, capsys):
    results = tmp_path / "in"
    for machine in ("amd-epyc-2c-5918da", "amd-epyc-2c-eb454c"):
        for number, path in enumerate(sorted((COMMITTED / machine).glob("*.json"))[:2]):
            document = json.loads(path.read_text())
            document["commit_info"]["id"] = ("aaaa" if number == 0 else "bbbb") + "0" * 36
            (results / machine).mkdir(parents=True, exist_ok=True)
            (results / machine / path.name).write_text(json.dumps(document))
    code = main([str(results), "--out", str(tmp_path / "a"), "--no-plots", "--commit", "aaaa"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Note: only the runs of commit aaaa (`--commit`): 2 of the 4 runs read." in out
    assert "Every run measured one commit, `aaaa000000`." in out
    csv = (tmp_path / "a" / "report.csv").read_text()
    runs = {line.split(",")[3] for line in csv.splitlines()[1:]}
    assert len(runs) == 2  # one run of each machine, the first (commit aaaa)
    # Without --commit both commits count, and the caption says how to keep one.
    assert main([str(results), "--out", str(tmp_path / "b"), "--no-plots"]) == 0
    assert "`--commit` keeps one" in capsys.readouterr().out
    code = main([str(results), "--out", str(tmp_path / "c"), "--commit", "cccc"])
    err = capsys.readouterr().err
    assert code == 2 and "no run measured cccc; the runs read measured" in err
    assert "aaaa000000 (2 runs)" in err and "bbbb000000 (2 runs)" in err
    assert not (tmp_path / "c").exists()  # nothing written
    for bad in (["--commit", "main"], ["--commit", "abcd", "--history"]):
        with pytest.raises(SystemExit) as exited:
            main([str(results), *bad])
        assert exited.value.code == 2
    assert "'main' is not a commit id" in capsys.readouterr().err


def test_a_fleets_report_lists_every_machine_in_the_verdicts_and_a_few_in_the_summary(
        tmp_path, capsys, monkeypatch):
    from bench.report import modes
    from bench.tools import fleet

    plotted = []  # the plots draw the machine/devices the detail tables show, 12
    monkeypatch.setattr(modes, "write_plots", lambda frame, *a: plotted.append(
        set(frame["label"])) or [])
    fleet.build(tmp_path / "fleet", 40, 20, [str(COMMITTED)])
    assert main([str(tmp_path / "fleet"), "--out", str(tmp_path / "out"),
                 "--no-html", "--no-index"]) == 0
    assert len(plotted) == 1 and len(plotted[0]) == modes.MAX_COLUMNS
    out = capsys.readouterr().out
    text = (tmp_path / "out" / "REPORT.md").read_text()
    assert "and 12 more)" in text.split("\n## ", 1)[0]  # the intro names 8 of 20 machines
    summary = text.split("## Summary", 1)[1].split("\n## ", 1)[0]
    more = int(re.search(r"…and (\d+) more machine/device\(s\): every one in section", summary)[1])
    verdicts = text.split("## Verdicts across machines", 1)[1].split("\n## ", 1)[0]
    first = verdicts.split("\n\n_Per case", 1)[0]
    listed = {line.split("|")[1].strip() for line in first.splitlines()
              if line.startswith("| `")}
    assert len(listed) == 12 + more  # every machine/device compared, one row each
    assert "The rest of the report" in out and "## Verdicts" not in out


def test_the_gate_over_a_fleet_lists_what_fails_and_counts_the_rest(tmp_path, capsys):
    from bench.report import gate
    from bench.tools import fleet

    template = sorted((COMMITTED / "intel-xeon-2c-6bb9b7").glob("*.json"))[0]
    fleet.build(tmp_path / "fleet", 120, 20, [str(template)])  # 6 runs of each machine
    sides = {"old": tmp_path / "old", "new": tmp_path / "new"}
    for machine in sorted((tmp_path / "fleet").iterdir()):
        runs = sorted(machine.glob("*.json"))
        for side, files in (("old", runs[:3]), ("new", runs[3:])):
            (sides[side] / machine.name).mkdir(parents=True)
            for path in files:
                shutil.copy2(path, sides[side] / machine.name / path.name)
    shutil.rmtree(sides["new"] / machine.name)  # one machine only in OLD
    # One case made 3x slower on one machine in NEW: it fails the gate and is listed.
    target = sorted((sides["new"] / "fleet-005-ef2d12").glob("*.json"))
    for path in target:
        document = json.loads(path.read_text())
        for benchmark in document["benchmarks"]:
            if benchmark["extra_info"]["case"] == "mlp-cpu-b128-fp32-xla" and \
                    benchmark["extra_info"]["suite"] == "train":
                benchmark["stats"] = {k: v * 3 if isinstance(v, float) else v
                                      for k, v in benchmark["stats"].items()}
                benchmark["stats"]["data"] = [x * 3 for x in benchmark["stats"]["data"]]
        path.write_text(json.dumps(document))

    def run(*options) -> tuple[int, str]:
        code = main(["--compare", str(sides["old"]), str(sides["new"]), "--no-index",
                     *options])
        return code, capsys.readouterr().out

    code, text = run()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "status" not in
            line and not line.startswith("| -")]
    total = int(re.search(r"…and (\d+) more row\(s\) not listed", text)[1]) + len(rows)
    assert code == 1 and len(rows) <= gate.MAX_ROWS + 5 and total > 300, text[-3000:]
    assert any(r.startswith("| slower") and "fleet-005-ef2d12" in r for r in rows)
    assert "1 machine(s) only in OLD, not compared" in text and "fleet-019" in text
    code, full = run("--print", "full")
    assert code == 1 and "not listed" not in full
    assert len([line for line in full.splitlines() if line.startswith("| ")]) == total + 2
    code, verdict = run("--print", "none")
    assert code == 1 and verdict.count("\n") == 1 and verdict.startswith("**FAIL**")
