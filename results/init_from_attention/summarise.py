"""Issue 31 §3: m4v-tiny started three ways, identical batches (same seed), 2,000 steps each; summarise the loss logs.

Arms (runs/init/ARM-sS/loss.csv, `m4v-bench train --model m4v-tiny --steps 2000 --threads 1 --quiet --out ...`):
  seeded   --init-from m4v/weights/dit-tiny                         (Mamba B, C seeded from W_K, W_Q; the default)
  default  --init-from m4v/weights/dit-tiny --option init_mamba=default (non-mixer weights copied, Mamba at its init)
  scratch  no --init-from
Batch i depends on (seed, i) only, so the arms see the same batches step for step: per-step paired comparisons.
Usage: python results/init_from_attention/summarise.py runs/init results/init_from_attention
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.core.provenance import provenance  # noqa: E402

ARMS = ("seeded", "default", "scratch")
WINDOWS = ((1, 300), (1, 2000), (1001, 2000), (1801, 2000))


def main(runs: Path, out: Path) -> None:
    seeds = sorted({p.name.split("-s")[-1] for p in runs.glob("*-s*") if p.is_dir()})
    rows, curves = [], {}
    for seed in seeds:
        logs = {arm: pd.read_csv(runs / f"{arm}-s{seed}" / "loss.csv").set_index("step")["loss"] for arm in ARMS
                if (runs / f"{arm}-s{seed}" / "COMPLETE").is_file()}
        if len(logs) < len(ARMS):
            continue
        for arm, loss in logs.items():
            curves[(arm, seed)] = loss
            for lo, hi in WINDOWS:
                rows.append({"seed": int(seed), "arm": arm, "steps": f"{lo}-{hi}",
                             "mean_loss": float(loss.loc[lo:hi].mean())})
        for a, b in (("default", "seeded"), ("seeded", "scratch"), ("default", "scratch")):
            diff = logs[a] - logs[b]
            for lo, hi in WINDOWS:
                d = diff.loc[lo:hi]
                rows.append({"seed": int(seed), "arm": f"{a} - {b}", "steps": f"{lo}-{hi}",
                             "mean_loss": float(d.mean()), "fraction_lower": float((d < 0).mean())})
    table = pd.DataFrame(rows)
    # across seeds: the mean of the per-seed values, and in how many seeds the difference is below 0
    per_seed = table[table["arm"].str.contains(" - ")]
    across = [{"seed": "all", "arm": arm, "steps": steps, "mean_loss": float(g["mean_loss"].mean()),
               "fraction_lower": float(g["fraction_lower"].mean()),
               "seeds_lower": f"{int((g['mean_loss'] < 0).sum())} of {len(g)}"}
              for (arm, steps), g in per_seed.groupby(["arm", "steps"], sort=False)]
    table = pd.concat([table, pd.DataFrame(across)], ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "init_summary.csv", index=False)
    (out / "init_summary.json").write_text(json.dumps(
        {"provenance": provenance({"arms": list(ARMS), "seeds": seeds, "steps": 2000, "runs": str(runs)}),
         "rows": table.to_dict(orient="records")}, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(6, 4))
    for (arm, seed), loss in curves.items():
        smooth = loss.rolling(100, min_periods=20).mean()
        ax.plot(smooth.index, smooth.values, label=f"{arm} (seed {seed})")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (mean of the last 100 steps)")
    ax.set_yscale("log")
    ax.set_title("m4v-tiny from dit-tiny: Mamba seeded / default init / scratch")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "init_curves.png", dpi=120)
    for (arm, seed), loss in curves.items():
        loss.to_csv(out / f"loss-{arm}-s{seed}.csv")
    print(table.to_string())


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
