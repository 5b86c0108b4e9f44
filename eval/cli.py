"""`murmurscope eval ...`: batch evaluation and benchmarks."""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Evaluate predictors and benchmark components.", no_args_is_help=True)


@app.command()
def classifier(
    circor_root: Annotated[Path, typer.Option(help="Labelled CirCor folder; its validation split is scored.")],
    model: Annotated[Path | None, typer.Option(help="Model folder (default: the shipped weights).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the JSON and the confusion PNG go.")]
    = Path("build/eval/classifier"),
    decision: Annotated[str | None, typer.Option(help="head or niizumi (default: the model's own).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 1000,
    threads: Annotated[int, typer.Option(help="torch CPU threads (the target is for 2).")] = 2,
) -> None:
    """Murmur weighted accuracy / UAR, per-feature scores and inference time on the validation split."""
    from rich.console import Console
    from rich.table import Table

    from eval.classifier_bench import ClassifierBenchConfig, run

    r = run(ClassifierBenchConfig(circor_root=circor_root, model=model, out_dir=out_dir, decision=decision,
                                  bootstrap=bootstrap, threads=threads))
    console = Console(width=150)

    def ci(pair):
        return f"[{pair[0]:.3f}, {pair[1]:.3f}]"

    t = Table(title=f"murmur on the validation split (n={r['n_val']}, decision {r['decision']})")
    for col in ("metric", "value", "95% CI", "target"):
        t.add_column(col)
    t.add_row("weighted accuracy", f"{r['weighted_accuracy']:.3f}", ci(r["weighted_accuracy_ci"]), ">= 0.80")
    t.add_row("UAR", f"{r['uar']:.3f}", ci(r["uar_ci"]), ">= 0.75")
    t.add_row("accuracy", f"{r['accuracy']:.3f}", "", "")
    for c, v in r["recall"].items():
        t.add_row(f"recall {c}", f"{v:.3f}", "", "")
    t.add_row("seconds / patient (4 x 20 s)", f"{r['seconds_per_patient']:.3f}", "", f"<= 1 ({r['threads']} threads)")
    console.print(t)
    f = Table(title="murmur features (truly Present validation patients)")
    for col in ("feature", "n train", "n val", "accuracy", "UAR", "UAR 95% CI", "majority UAR", "majority acc"):
        f.add_column(col)
    for name, s in r["features"].items():
        f.add_row(name, str(s["n_train"]), str(s["n_val"]), f"{s['accuracy']:.3f}", f"{s['uar']:.3f}",
                  ci(s["uar_ci"]), f"{s['majority_uar']:.3f}", f"{s['majority_accuracy']:.3f}")
    console.print(f)
    console.print(f"confusion matrix: {out_dir / 'confusion.png'}; numbers: {out_dir / 'classifier_bench.json'}")
