"""Markdown table of `bench_train.py --what=schedule_table` JSON files (issue 11 item 8)."""
import json
import sys

for path in sys.argv[1:]:
  res = json.load(open(path))["schedule_table"]
  for prob, r in res.items():
    for which in ("default", "gd_best"):
      e = r[which]
      cells = []
      for row in e["rows"]:
        if row.get("diverged"):
          cells.append("diverged")
          continue
        cells.append(f"{row['eps_rel']:.4f} / {row['eps_rel_relaxed']:.4f} (10^{row['log10_loss']:.1f}, "
                     f"{row['steps']} steps)")
      name = f"{e['optimizer']} lr {e['lr']:g}" + (" (default)" if which == "default" else " (best GD)")
      print(f"| {prob} | {name} | " + " | ".join(cells) + " |")
    sel = r["gd_best"].get("selection_first_mark", {})
    if sel:
      print("| | GD lr tried (1 min: exact eps_rel, log10 loss) | " + "; ".join(
          f"{lr}: {v['eps_rel']:.4f}, {v['log10_loss']:.1f}" for lr, v in sel.items()) + " | | |")
