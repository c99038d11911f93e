"""The known-answer study and the known-answer models' training records, printed in one run for RESULTS.md
(issue 16).

    python -m render --resolution 64 --recolor 1 --out runs/render64          # the 25 default scenes, held out
    python benchmarks/known_answers.py --data runs/render64 --out runs/known-study
    python benchmarks/known_answers.py --data runs/gen-s2-64 --out runs/known-study-gen --keeps-light runs/known-light
    python benchmarks/known_answers.py --data runs/gen-s2-64 --out runs/known-study-intrinsic \
        --decomposing runs/known-intrinsic --keeps-light runs/known-light   # the decomposing network: both components

Runs `python -m evaluate study` (resumable: a finished step with the identical command is skipped), which puts the
decomposing network (known-albedo), the reproduce-the-photo network (known-photo) and an untrained one through the
whole chain (image probe, a population of 19 untrained networks, evaluate with ablation and link, verdict) and
writes the table: one row per network, its verdict's H4-H6 against the answer it must give. Then prints each
model's training record (time, threads, VAE PSNR, data) and its loss curve (thinned to 10 points), and draws both
curves into OUT/loss_curves.png. The criteria are the verdict's (evaluate/verdict_criteria.py), not this script's.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


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
    ap.add_argument("--out", default="runs/known-study")
    ap.add_argument("--decomposing", default="known-albedo",
                    help="the decomposing network (evaluate study --decomposing; e.g. a `--task intrinsic` folder)")
    ap.add_argument("--models", default="known-photo", help="more models whose training records are printed (the "
                    "decomposing and keeps-light networks' always are)")
    ap.add_argument("--steps", type=int, default=10, help="inference steps of every sampling run (evaluate study)")
    ap.add_argument("--population", type=int, default=19, help="untrained networks (evaluate study)")
    ap.add_argument("--keeps-light", default=None, metavar="FOLDER",
                    help="a `probe known train --task light` model: the study's keeps-light network (its training "
                         "record is printed too)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars from the jobs")
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "evaluate", "study", "--data", a.data, "--out", a.out, "--steps", str(a.steps),
           "--population", str(a.population), "--decomposing", a.decomposing] + (["--quiet"] if a.quiet else []) + (
        ["--keeps-light", a.keeps_light] if a.keeps_light else [])
    t_study = run(cmd)
    curves = {}
    print("\ntraining (from each model's record):")
    for model in dict.fromkeys([a.decomposing] + [m for m in a.models.split(",") if m]
                               + ([a.keeps_light] if a.keeps_light else [])):
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
    print(f"\nstudy ({t_study / 60:.1f} min wall in this call; steps run before were skipped):")
    print((Path(a.out) / "study.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
