"""Build the shipped weights (src/genzoo/pretrained/): train a family's `cpu` recipe on full MNIST, evaluate it on
the whole test set, and pack it with its manifest entry.

    # the whole of it for one family: train (resumable: the same command goes on after a cut), evaluate, pack
    OMP_NUM_THREADS=1 python benchmarks/pretrained.py build cgan --data ../shared/data/mnist --runs runs/ship
    # pack a run trained already by `genzoo train MODEL --recipe cpu`, with the CPU-seconds its training took
    python benchmarks/pretrained.py pack cgan --run runs/ship/cgan --cpu-seconds 1234 --commit <sha>
    # after packing: README's family table, docs/PRETRAINED.md's tables and README's zoo picture (docs/zoo.png)
    python benchmarks/pretrained.py readme

Training runs on one thread (OMP_NUM_THREADS=1), so that its CPU-seconds are a 2-core machine's time with the
other core free. The evaluation uses each family's full protocol on the 10,000 test digits (`EVALUATION`);
its JSON ships beside the weights. Packing (`genzoo.pretrained.build.pack_run`) keeps only the weights sampling
needs, in float16 where the re-score on the fixed subset moves by less than its tolerance, and records that
re-score in the manifest, where tests/test_pretrained.py checks it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

from genzoo import pretrained, recipes, runs
from genzoo.commands import train
from genzoo.data import load_data
from genzoo.evaluation.evaluate import evaluate_run
from genzoo.pretrained.build import pack_run
from genzoo.showcase.shipped import write_zoo_picture

# evaluate_run settings beyond the paper protocol (every test digit, 10,000 samples, the papers' IWAE and AIS)
EVALUATION = {
    "vae": {"iwae_k": 1000},
    "rbm": {"ais_betas": 14_500, "ais_runs": 100},
    "pixelcnn": {"n_samples": 1000},
    "pixelrnn": {"n_samples": 1000},
    "ddpm": {"sample_options": {"sampler": "ddim", "steps": 50, "guidance": 2.0}},
    "instruct": {"n_edits": 23_000, "n_samples": 0},
}


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def shipped_stage_seconds(model_name: str, run: Path) -> float:
    """The training CPU-seconds of the recipe's stages that were copies of shipped models (the editor's diffusion
    stage): part of what the recipe cost, though this command did not spend them."""
    total = 0.0
    for stage in recipes.get(model_name, "cpu").stages:
        if "shipped" in runs.read_config(run / "stages" / stage.name):
            total += pretrained.manifest()["models"][stage.model]["cpu_seconds"]
    return total


def pack(model_name: str, run: Path, cpu_s: float, commit: str, data: str) -> dict:
    """Evaluate `run` on the full test set, then write src/genzoo/pretrained/MODEL/ and its manifest entry."""
    config = runs.read_config(run)
    if config["train"].get("recipe") != "cpu":
        sys.exit(f"{run}: trained with recipe {config['train'].get('recipe')!r}; ship only the cpu recipe")
    print(f"{model_name}: evaluating on the full test set ...", file=sys.stderr)
    evaluation = evaluate_run(run, device="cpu", seed=0, protocol="paper", **EVALUATION.get(model_name, {}))
    return pack_run(run, model_name, load_data(data, verbose=False), evaluation=evaluation, cpu_seconds=cpu_s,
                    commit=commit)


def write_readme_cells(readme: Path) -> str:
    """Fill the sample, time and headline cells of each shipped model's row of README's family table."""
    lines = readme.read_text().splitlines()
    for i, line in enumerate(lines):
        cells = line.split(" | ")
        name = cells[0].removeprefix("| `").removesuffix("`") if line.startswith("| `") else None
        if name in pretrained.names() and len(cells) == 7:
            sample, hours, figures = pretrained.table_cells(name)
            cells[2], cells[4], cells[5] = sample, hours, figures
            lines[i] = " | ".join(cells)
    readme.write_text("\n".join(lines) + "\n")
    return f"{readme}: rows of {', '.join(pretrained.names())} written from the manifest"


def write_docs_table(page: Path) -> str:
    """The shipped models' tables of docs/PRETRAINED.md (each between its markers), from the manifest and the
    shipped evaluations: the figures, and each digit's share of every sampling model's samples."""
    text = page.read_text()
    for block, rows in (("shipped", figure_rows()), ("shares", share_rows())):
        begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
        if begin not in text or end not in text:
            raise SystemExit(f"{page}: no {begin} ... {end} markers to write the table between")
        head, rest = text.split(begin)
        text = head + begin + "\n" + "\n".join(rows) + "\n" + end + rest.split(end)[1]
    page.write_text(text)
    return f"{page}: the tables of {', '.join(pretrained.names())} written from the manifest"


def figure_rows() -> list[str]:
    rows = ["| model | figures on the 10,000 test digits | training (one thread) | trained at commit | packed | "
            "weights |", "|---|---|---|---|---|---|"]
    for name, entry in pretrained.manifest()["models"].items():
        size = (pretrained.ROOT / name / "model.safetensors").stat().st_size / 2**20
        figures = "; ".join(f"{label}: {value}" for label, value in entry["headline"].items())
        rows.append(f"| `pretrained:{name}` | {figures} | {entry['cpu_seconds'] / 3600:.2f} CPU-hours | "
                    f"{entry['commit'][:7]} | {entry['packed_at']} | {entry['dtype']}, {size:.2f} MiB |")
    return rows


def share_rows() -> list[str]:
    """One row per shipped model whose evaluation read its samples' digits (`class_coverage`): the share of each
    digit 0-9 in percent, and the sample count."""
    rows = ["| model | samples | " + " | ".join(str(d) for d in range(10)) + " |", "|---|---|" + "---|" * 10]
    for name in pretrained.names():
        coverage = json.loads((pretrained.ROOT / name / "evaluation.json").read_text()).get("class_coverage")
        if isinstance(coverage, dict):
            shares = " | ".join(f"{100 * share:.1f}%" for share in coverage["value"])
            rows.append(f"| `pretrained:{name}` | {coverage['n']:,} | {shares} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="train the cpu recipe (resumable), evaluate, pack")
    b.add_argument("model", choices=list(recipes.RECIPES))
    b.add_argument("--data", default="mnist")
    b.add_argument("--runs", default="runs/ship")
    k = sub.add_parser("pack", help="evaluate and pack a run trained with --recipe cpu")
    k.add_argument("model", choices=list(recipes.RECIPES))
    k.add_argument("--run", required=True)
    k.add_argument("--cpu-seconds", type=float, required=True, help="CPU-seconds its training took")
    k.add_argument("--commit", required=True, help="the commit that trained it")
    k.add_argument("--data", default="mnist")
    sub.add_parser("readme", help="write the shipped models' cells of README.md's family table, the tables of "
                                  "docs/PRETRAINED.md from the manifest, and README's zoo picture (docs/zoo.png) "
                                  "from the shipped weights")
    args = p.parse_args()
    if args.command == "readme":
        repo = Path(__file__).resolve().parents[1]
        print(write_readme_cells(repo / "README.md"))
        print(write_docs_table(repo / "docs" / "PRETRAINED.md"))
        print(f"{write_zoo_picture(repo / 'docs' / 'zoo.png')}: one row of samples per shipped model")
        return
    if args.command == "build":
        run = Path(args.runs) / args.model
        spent = run / "training_cpu_seconds.json"  # summed over the commands that trained it
        before = 0.0
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        if spent.exists():  # a training the same command began: its seconds so far, and the commit it began at
            before, commit = (json.loads(spent.read_text())[key] for key in ("cpu_seconds", "commit"))
        began = cpu_seconds()
        resume = (run / runs.CONFIG).exists()
        try:
            train(args.model, data=args.data, out=str(run), device="cpu", resume=resume,
                  recipe=None if resume else "cpu")
        except KeyboardInterrupt:
            sys.exit(f"{args.model}: stopped (checkpointed); the same command continues the training")
        finally:  # the CPU-seconds of a stopped training count too, when the same command goes on
            total = before + cpu_seconds() - began
            spent.write_text(json.dumps({"cpu_seconds": total, "commit": commit}) + "\n")
        entry = pack(args.model, run, total + shipped_stage_seconds(args.model, run), commit, args.data)
    else:
        entry = pack(args.model, Path(args.run), args.cpu_seconds, args.commit, args.data)
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
