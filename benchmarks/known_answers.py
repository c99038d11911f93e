"""The known-answer models on the held-out default scenes: does evaluate find the albedo model right and the
photo model not? (issue 16, points 1 and 2)

    python -m render --resolution 64 --recolor 1 --out runs/render64          # the 25 default scenes, held out
    python benchmarks/known_answers.py --data runs/render64 --out runs/known-eval

For each model (default: the shipped known-albedo and known-photo) this runs, as a user would,
`python -m evaluate generate --model M --data DATA --out OUT/M` (baselines image_as_albedo and retinex_color
beside it, the same inputs) and `python -m evaluate score`, then prints one table: each metric's mean with its
scene-cluster 95% CI for the model and the baselines, and the paired difference model - baseline with its
cluster-bootstrap CI (evaluate's own `paired_differences`). The pre-declared criterion (issue 16):
- known-albedo: lmse_linear_scalar and mse_srgb_scalar lower than image_as_albedo AND retinex_color, each paired
  CI entirely below 0;
- known-photo: must NOT beat image_as_albedo (its paired CI on those metrics is not entirely below 0).
The rows end with PASS / FAIL; the output goes into benchmarks/RESULTS.md. Generation resumes (evaluate's keys).
Each model's training record (time, threads, VAE PSNR) and its loss curve (loss_curve.csv, thinned to 10 points) are
printed too, and both curves drawn into OUT/loss_curves.png.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METRICS = ("lmse_linear_scalar", "mse_srgb_scalar")
BASELINES = ("image_as_albedo", "retinex_color")
EXPECT = {"known-albedo": "beats", "known-photo": "does not beat image_as_albedo"}


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def verdict(model: str, diffs: dict) -> str:
    """PASS / FAIL of the pre-declared criterion from evaluate's paired differences (model - baseline)."""
    below = {(m, b): (diffs.get(b, {}).get(m) or {}).get("ci95_high", float("nan")) < 0 for m in METRICS
             for b in BASELINES}
    if EXPECT.get(model) == "beats":
        return "PASS" if all(below.values()) else "FAIL"
    if model in EXPECT:
        return "FAIL" if any(below[(m, "image_as_albedo")] for m in METRICS) else "PASS"
    return "n/a"


def model_folder(model: str) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from probe.klein.known import KNOWN_MODELS, known_model_dir

    return known_model_dir(model) if model in KNOWN_MODELS else Path(model)


def training_summary(model: str) -> tuple[dict, list[tuple]]:
    """The model's record and its loss curve rows (stage, step, loss, validation loss)."""
    folder = model_folder(model)
    rec = json.loads((folder / "ray_plantain_known.json").read_text())
    rows = []
    for line in (folder / "loss_curve.csv").read_text().splitlines()[1:]:
        stage, step, loss, val = line.split(",")
        rows.append((stage, int(step), float(loss), float(val) if val else None))
    return rec, rows


def plot_curves(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, rows in curves.items():
        for ax, stage in zip(axes, ("vae", "transformer")):
            r = [x for x in rows if x[0] == stage]
            if r:
                ax.plot([x[1] for x in r], [x[2] for x in r], label=f"{name} training")
                v = [x for x in r if x[3] is not None]
                if v and stage == "transformer":
                    ax.plot([x[1] for x in v], [x[3] for x in v], "o--", ms=3, label=f"{name} validation")
    axes[0].set_title("VAE: L1 + L2 reconstruction loss", fontsize=9)
    axes[1].set_title("transformer: flow-matching loss", fontsize=9)
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle("known-answer models trained here on synthetic renders: a check of the tool, not klein", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--data", required=True, help="a render of the 25 default scenes at the models' resolution (64)")
    ap.add_argument("--out", default="runs/known-eval")
    ap.add_argument("--models", default="known-albedo,known-photo", help="comma-separated --model values")
    ap.add_argument("--steps", type=int, default=None, help="inference steps (default: the model's own, 50)")
    ap.add_argument("--n-boot", type=int, default=2000)
    a = ap.parse_args()
    py = sys.executable
    rows, times = [], {}
    for model in a.models.split(","):
        out = Path(a.out) / Path(model).name
        cmd = [py, "-m", "evaluate", "generate", "--model", model, "--data", a.data, "--out", str(out), "--quiet"]
        if a.steps:
            cmd += ["--steps", str(a.steps)]
        times[model] = run(cmd)
        run([py, "-m", "evaluate", "score", "--data", a.data, "--out", str(out), "--n-boot", str(a.n_boot)])
        s = json.loads((out / "score_summary.json").read_text())
        diffs = {b: s.get("paired_differences", {}).get(b) or {} for b in BASELINES}
        rows.append((model, s, diffs))
    curves = {}
    print("\ntraining (from each model's record):")
    for model in a.models.split(","):
        rec, rows = training_summary(model)
        curves[rec["name"]] = rows
        t, tc = rec["timing"], rec["train_config"]
        print(f"  {rec['name']}: {rec['transformer_parameters']:,} transformer parameters, {tc['steps']} steps x batch "
              f"{tc['batch']}, VAE {rec['vae']}, VAE PSNR {rec['vae_psnr_srgb_8bit']}; {t['total_wall_s'] / 60:.1f} min "
              f"wall, {t['total_cpu_s'] / 60:.1f} CPU-min, {t['threads']} threads, load average at the end "
              f"{t.get('load_average_1min_at_end', float('nan')):.1f}; data {rec['data_recipe']['n_samples']} samples "
              f"(`{rec['data_recipe']['render_command']}`)")
        tf = [r for r in rows if r[0] == "transformer"]
        pick = [tf[round(i * (len(tf) - 1) / 9)] for i in range(10)] if len(tf) >= 10 else tf
        print("    transformer loss: " + ", ".join(f"{r[1]}: {r[2]:.3f}" + (f" (val {r[3]:.3f})" if r[3] else "")
                                                  for r in pick))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    plot_curves(curves, Path(a.out) / "loss_curves.png")
    print(f"  curves: {Path(a.out) / 'loss_curves.png'}")
    print()
    print(f"held-out default scenes: {a.data}; {rows[0][1]['n_samples']} samples in {rows[0][1]['n_clusters']} scene "
          f"clusters; 95% CIs resample scenes; paired = model - baseline on the same samples")
    for model, s, diffs in rows:
        print(f"\n{model} (generation {times[model]:.0f} s wall): {verdict(model, diffs)}  "
              f"(criterion: {EXPECT.get(model, 'none')})")
        print(f"  {'metric':22s} {'model':>26s} " + " ".join(f"{b:>26s}" for b in BASELINES)
              + " " + " ".join(f"{'model - ' + b:>30s}" for b in BASELINES))
        for m in METRICS:
            cell = lambda rec: (f"{rec['mean']:.4f} [{rec['ci95_low']:.4f}, {rec['ci95_high']:.4f}]"  # noqa: E731
                                if rec and rec.get("mean") is not None else "n/a")
            mets = [s["methods"].get(k, {}).get("metrics", {}).get(m) for k in ("klein",) + BASELINES]
            d = [cell(diffs.get(b, {}).get(m)) for b in BASELINES]
            print(f"  {m:22s} {cell(mets[0]):>26s} " + " ".join(f"{cell(x):>26s}" for x in mets[1:]) + " "
                  + " ".join(f"{x:>30s}" for x in d))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
