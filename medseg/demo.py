"""``make demo``: the main job end to end on the built-in synthetic default.

1. synthesize the default Pancreas-CT-like set (TCIA layout) unless it is there,
   and check its integrity;
2. train U-Net without a regularizer and with Heuristic Dropout on the CPU
   config (``configs/cpu/pancreas_unet.yaml``), same split and seed;
3. evaluate both on the test scans (and on the training scans, to show the gap);
4. print a DICE/IoU/HD95/NSD table;
5. run ``medseg predict`` on a held-out synthetic scan (a scan the models never
   saw, from another seed) → a NIfTI mask in the scan's geometry + overlay PNG.

Every step goes through the ``medseg`` command line, so the demo runs exactly
what a user would type. Outputs: ``runs/demo/`` and ``outputs/demo/``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .cli import main as medseg
from .training.metrics import METRICS

CONFIG = "configs/cpu/pancreas_unet.yaml"
DATA = Path("data/synthetic/pancreas")
HELDOUT = Path("data/synthetic/pancreas_heldout")
RUNS = Path("runs/demo")
OUTPUTS = Path("outputs/demo")
METHODS = {"U-Net (no regularizer)": "none", "U-Net + Heuristic Dropout": "heuristic"}


def step(title: str, argv: list[str]) -> None:
    print(f"\n=== {title}\n$ medseg {' '.join(argv)}", flush=True)
    code = medseg(argv)
    if code != 0:
        print(f"demo: step failed with exit code {code}", file=sys.stderr)
        sys.exit(code)


def main() -> int:
    t0 = time.perf_counter()
    if not (DATA / "Pancreas-CT").is_dir():
        step("synthesize the default data", ["data", "synth", "pancreas", "--out", str(DATA), "--force"])
    step("check the data", ["data", "check", "pancreas", str(DATA)])
    if not HELDOUT.is_dir():
        step("synthesize a held-out scan (another seed)",
             ["data", "synth", "pancreas", "--out", str(HELDOUT), "--cases", "1", "--seed", "1000", "--force"])

    rows = []
    for label, reg in METHODS.items():
        run_dir = RUNS / f"unet_{reg}"
        step(f"train {label}", ["train", "--config", CONFIG, f"regularizer.name={reg}",
                                "--out", str(run_dir), "--force"])
        step(f"evaluate {label} on the test scans", ["evaluate", str(run_dir), "--no-progress"])
        step(f"evaluate {label} on the training scans", ["evaluate", str(run_dir), "--split", "train",
                                                          "--no-progress"])
        test = json.loads((run_dir / "metrics.json").read_text())
        train = json.loads((run_dir / "metrics_train.json").read_text())
        rows.append((label, test, train))

    heldout = sorted((HELDOUT / "Pancreas-CT").iterdir())[0]
    step("predict on the held-out scan",
         ["predict", "--checkpoint", str(RUNS / "unet_heuristic" / "checkpoints" / "best.ckpt"),
          "--output", str(OUTPUTS / "predict"), "--overlay", "--force", str(heldout)])

    print("\nSynthetic-data results (configs/cpu/pancreas_unet.yaml; 2 test scans, per-scan 3D "
          "metrics on the native grid, mean ± std over scans; HD95 in mm, NSD at 2 mm; best "
          "checkpoint by validation DICE):\n")
    print(f"| {'method':28s} | {'test DICE':>15s} | {'test IoU':>15s} | {'test HD95 (mm)':>15s} | "
          f"{'test NSD':>15s} | {'pooled DICE':>11s} | {'train DICE':>10s} |")
    print(f"|{'-' * 30}|{'-' * 17}|{'-' * 17}|{'-' * 17}|{'-' * 17}|{'-' * 13}|{'-' * 12}|")
    for label, test, train in rows:
        cells = " | ".join(f"{test[m + '_mean']:.4f} ± {test[m + '_std']:.4f}" if m != "hd95" else
                           f"{test[m + '_mean']:6.2f} ± {test[m + '_std']:6.2f}" for m in METRICS)
        print(f"| {label:28s} | {cells} | {test['pooled_dice']:11.4f} | {train['dice_mean']:10.4f} |")
    print(f"\nruns (checkpoints, logs, metrics.json, cases.csv): {RUNS}/")
    print(f"prediction (NIfTI mask in the scan's geometry + overlay PNG): {OUTPUTS / 'predict'}/")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
