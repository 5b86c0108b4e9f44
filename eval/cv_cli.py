"""`murmurscope eval classifier-cv`: run the cross-validated murmur recipes and print their tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# eval.cv_adapt.VARIANTS, prefixed (not imported: it pulls in torch, and --help should stay quick)
ADAPTED = ("whisper-ft", "whisper-ft-whole", "whisper-cp-in-lp", "whisper-cp-all-lp", "whisper-cp-in-ft",
           "whisper-cp-all-ft", "whisper-cp-in-ft-whole", "whisper-cp-all-ft-whole")
RECIPES = ("cnn", "whisper-lp", *ADAPTED)


def classifier_cv(
    circor_root: Annotated[Path, typer.Option(help="Labelled CirCor folder (e.g. ../shared/circor-dev).")],
    out: Annotated[Path, typer.Option(help="Folder of the recipes' folds; finished folds are reused.")]
    = Path("build/cv"),
    cv: Annotated[int, typer.Option("--cv", help="Folds (patient level, stratified as the project split).")] = 5,
    recipe: Annotated[Optional[list[str]], typer.Option(
        help="Recipes to run before the tables: cnn, whisper-lp, and the adapted Whisper encoders whisper-ft, "
             "whisper-ft-whole, whisper-cp-{in,all}-{lp,ft,ft-whole} (repeatable; default: only print).")] = None,
    only_fold: Annotated[Optional[list[int]], typer.Option(help="Run only these folds (repeatable).")] = None,
    cnn_members: Annotated[int, typer.Option(help="cnn: ensemble members per fold (the shipped recipe has 5).")] = 5,
    device_augment: Annotated[Optional[str], typer.Option(
        help="cnn: device augmentation parts, comma-separated (response, level, noise; see finetune classifier "
             "--help); the recipe's name carries them.")] = None,
    whisper: Annotated[Path, typer.Option(help="whisper-lp: converted Whisper folder (finetune convert-whisper).")]
    = Path("build/whisper-tiny.en"),
    whisper_seconds: Annotated[Optional[float], typer.Option(
        help="whisper-*: encode only the centre this many seconds of each recording.")] = 10.0,
    physionet_root: Annotated[Optional[Path], typer.Option(
        help="whisper-cp-all-*: a PhysioNet 2016 folder (e.g. ../shared/physionet2016-dev) added to CP.")] = None,
    cp_steps: Annotated[int, typer.Option(help="whisper-cp-*: continued-pretraining steps per fold.")] = 200,
    cp_lr: Annotated[float, typer.Option(help="whisper-cp-*: continued-pretraining learning rate.")] = 1e-4,
    ft_epochs: Annotated[int, typer.Option(help="whisper-*ft*: fine-tuning epochs per fold.")] = 3,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    plot: Annotated[Optional[Path], typer.Option(help="Write the reliability and per-fold figure (PNG) here.")]
    = None,
    study_plot: Annotated[Optional[Path], typer.Option(
        help="Write the per-recipe figure (per-fold AUROC, W.acc, UAR under each recipe's own decision; PNG) here.")]
    = None,
) -> None:
    """5-fold cross-validation of the murmur recipes on every labelled patient: macro AUROC, W.acc, UAR and ECE
    (mean ± std over folds), and the systolic features against the majority baseline."""
    import os
    import platform

    from rich.console import Console

    from assistant.errors import MurmurScopeError
    from eval.cross_validation import CVConfig, patients_and_folds
    from eval.cv_report import (
        calibration_lines,
        cost_lines,
        feature_markdown,
        feature_summary_markdown,
        murmur_markdown,
        murmur_rows,
        plot_cv,
        plot_study,
        recipes,
        study_markdown,
    )

    bad = [r for r in recipe or [] if r not in RECIPES]
    if bad:
        raise MurmurScopeError(f"--recipe must be one of {RECIPES}, not {bad[0]!r}")
    config = CVConfig(circor_root, out, cv, only_folds=tuple(only_fold) if only_fold else None, threads=threads)
    patients, splits = patients_and_folds(config)
    if "cnn" in (recipe or []):
        from eval.cv_cnn import cnn_recipe_name, run_cnn
        from finetune.device_augment import check_parts

        parts = check_parts(tuple(p.strip() for p in (device_augment or "").split(",") if p.strip()))
        # No parts: no override at all, so the fold files read as the shipped recipe's.
        augment = {"device_augment": parts} if parts else {}
        run_cnn(config, name=cnn_recipe_name(cnn_members, parts), cache_dir=Path("build/classifier"),
                members=cnn_members, workers=min(2, cnn_members), **augment)
    elif device_augment:
        raise MurmurScopeError("--device-augment applies to --recipe cnn")
    if "whisper-lp" in (recipe or []):
        import torch

        from eval.cv_probe import candidate_probes, run_probe
        from eval.cv_whisper import labelled_refs, whisper_embeddings

        torch.set_num_threads(threads)
        embeddings = whisper_embeddings(labelled_refs(circor_root), whisper, out, max_seconds=whisper_seconds)
        for probe in candidate_probes():
            run_probe(config, probe, embeddings, patients, splits, f"whisper-tiny.en-{whisper_seconds:g}s")
    adapted = [r for r in recipe or [] if r in ADAPTED]
    if adapted:
        from eval.cv_adapt import AdaptStudyConfig, run_variant
        from finetune.whisper_adapt import CPConfig, FTConfig

        if whisper_seconds is None:
            raise MurmurScopeError("the adapted Whisper recipes read a centre crop: give --whisper-seconds")
        study = AdaptStudyConfig(whisper, physionet_root, whisper_seconds,
                                 cp=CPConfig(steps=cp_steps, lr=cp_lr, threads=threads),
                                 ft=FTConfig(epochs=ft_epochs, threads=threads))
        for r in adapted:
            run_variant(config, study, r.removeprefix("whisper-"), patients, splits)
    found = recipes(out)
    if not found:
        raise MurmurScopeError(f"{out}: no finished folds yet; run with --recipe cnn or --recipe whisper-lp")
    console = Console(width=200)
    console.print(f"# {len(patients)} patients, {cv}-fold CV; {platform.node()} {os.cpu_count()} CPUs\n",
                  highlight=False)
    rows = murmur_rows(found, cv)
    console.print("## Each recipe under its own decision\n\n" + study_markdown(rows) + "\n", highlight=False)
    console.print("## Every decision rule\n\n" + murmur_markdown(rows) + "\n", highlight=False)
    console.print(calibration_lines(found) + "\n", highlight=False)
    console.print("## Systolic features and location: mean UAR (folds above the majority baseline)\n\n"
                  + feature_summary_markdown(found, patients, splits) + "\n", highlight=False)
    console.print(feature_markdown(found, patients, splits) + "\n", highlight=False)
    console.print(cost_lines(found), highlight=False)
    if plot is not None:
        console.print(f"wrote {plot_cv(found, plot)}", highlight=False)
    if study_plot is not None:
        console.print(f"wrote {plot_study(found, study_plot)}", highlight=False)
