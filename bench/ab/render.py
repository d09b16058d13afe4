"""The verdict table of an A/B comparison in Markdown (VERDICT.md and the terminal)."""

from __future__ import annotations

import math

from bench.ab.rule import CONFIDENCE, SPENDING_POWER, first_look, look_multipliers
from bench.stats import SLOWER, UNDECIDED, VERDICTS, t_quantile


def render(rows: list[dict], threshold: float, base: str, head: str,
           confidence: float = CONFIDENCE, pairs: tuple[int, int] = (2, 2),
           why: str = "") -> str:
    """The verdict table in Markdown; ``pairs``: (--min-pairs, --max-pairs), which set the
    rule stated under it."""
    lines = [f"HEAD {head[:10]} against BASE {base[:10]}: time ratio HEAD/BASE (above 1 = "
             f"slower), geometric mean over pairs; threshold {threshold:.0%}", "",
             "| verdict | suite | case | ratio | interval | pairs | left out (contended) |",
             "| --- | --- | --- | ---: | --- | ---: | ---: |"]
    for r in rows:
        interval = (f"{r['low']:.3f}-{r['high']:.3f}" if not math.isnan(r["low"]) else "—")
        ratio = f"{r['ratio']:.3f}" if not math.isnan(r["ratio"]) else "—"
        lines.append(f"| {r['verdict']} | {r['suite']} | {r['case']} | {ratio} | {interval} "
                     f"| {r['pairs']} | {r['contended_pairs']} |")
    cases = [r for r in rows if r["suite"] != "(all)"]
    together = [r for r in rows if r["suite"] == "(all)"]
    slower = [r for r in rows if r["verdict"] == SLOWER]
    undecided = [r["case"] for r in cases if r["verdict"] == UNDECIDED]
    first, last = first_look(pairs[0]), pairs[1]
    factors = look_multipliers(pairs[0], pairs[1], confidence)
    rule = (f"Student's t on the log ratios at {confidence:.0%}" if len(factors) <= 1 else
            f"Student's t on the log ratios, widened for looking after each of pairs "
            f"{first}-{last} (alpha spent as (n/{last})^{SPENDING_POWER}; t multiplier "
            f"{factors[first]:.1f} at {first} pairs, {factors[last]:.2f} at {last} against "
            f"{t_quantile(confidence, last - 1):.2f} for one look): an unchanged case is "
            f"called slower at any look with chance {(1 - confidence) / 2:.1%}, faster "
            f"the same")
    lines += ["", f"_Interval: {rule}. slower: the interval "
                  f"above {1 + threshold:.2f}; faster: below {1 - threshold:.2f}; same: "
                  f"within {1 - threshold:.2f}-{1 + threshold:.2f}; undecided: none of "
                  f"these. (all cases): each full pair's geometric mean over its cases."
                  + (f" Stopped: {why}." if why else "") + "_",
              "", f"**{'SLOWER' if slower else 'PASS'}**: "
                  + ", ".join(f"{sum(r['verdict'] == v for r in cases)} {v}" for v in VERDICTS)
                  + "".join(f"; all cases together: {r['verdict']}" for r in together)
                  + (f"; undecided: {', '.join(undecided)}" if undecided else "")]
    return "\n".join(lines) + "\n"
