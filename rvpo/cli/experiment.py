"""``rvpo experiment``: methods x seeds of ``rvpo train`` runs, statistics over seeds, figures, report.md.

    rvpo experiment configs/experiments/constraints_cpu.yaml            # run (or continue) it
    rvpo experiment configs/experiments/constraints_cpu.yaml --dry-run  # the plan: which runs are done
    rvpo experiment EXP.yaml --seeds 100..102 --out runs/tuning         # tuning seeds, elsewhere
    rvpo experiment EXP.yaml --set steps=2 --set eval.examples=4        # change train fields of every run
    rvpo experiment EXP.yaml --report-only                              # re-aggregate, train nothing

Results: <out>/<name>/ (report.md, curves.csv, runs.csv, results.json, plots/, runs/<label>-seed<N>/).
Running the same command again skips finished runs and resumes an interrupted one. Ctrl-C stops
after the current run's checkpoint. See docs/experiment.md.
"""

from __future__ import annotations

import argparse
import sys
import time

from rvpo.cli import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser("experiment", help="compare methods x seeds of rvpo train runs (statistics, figures, report)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", metavar="EXPERIMENT_YAML", help="experiment file (train, methods, seeds, target, out)")
    p.add_argument("--out", help="root folder instead of the file's 'out' (results go to <out>/<name>/)")
    p.add_argument("--seeds", help="seeds instead of the file's, e.g. 0..4 or 0,1,2")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set a train field for every run, e.g. --set steps=2 (applied after the file's train:)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (each run: new, resume or done) and exit")
    p.add_argument("--report-only", action="store_true", help="write the tables, plots and report from the runs so far")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or stage messages")
    p.add_argument("--verbose", action="store_true", help="show transformers/TRL warnings")
    p.set_defaults(func=run)


SET_ELSEWHERE = {"seed": "seeds come from the experiment file's 'seeds:' (or --seeds), one run per seed",
                 "out": "the experiment's folder comes from its 'out:' (or --out)"}
"""Train fields an experiment sets per run: ``--set`` may not change them (it would be silently ignored)."""


def _spec(args):
    from rvpo.experiment.spec import load_spec
    from rvpo.train.config import ConfigError, canonical, parse_set

    try:
        train_set = parse_set(args.set)
        for key in train_set:
            if canonical(key) in SET_ELSEWHERE:
                raise UserError(f"--set {key}: not allowed here: {SET_ELSEWHERE[canonical(key)]}")
        return load_spec(args.config, out=args.out, seeds=args.seeds, train_set=train_set)
    except ConfigError as e:
        raise UserError(str(e)) from None


def _plan_text(spec) -> str:
    from rvpo.experiment.rundirs import last_step, plan, run_status

    lines = [f"experiment {spec.name}: {len(spec.methods)} methods x {len(spec.seeds)} seeds -> {spec.root}"]
    for i, (seed, m) in enumerate(plan(spec), 1):
        d = spec.run_dir(m.label, seed)
        status = run_status(d, spec.config(m, seed))
        lines.append(f"  {i:>3}. {m.label:<16} seed {seed:<5} {status:<7} {last_step(d)}/{m.cfg.steps} steps  {d}")
    return "\n".join(lines)


def _check_out(spec) -> None:
    """The results folder must be creatable (``--out FILE`` or a 300-byte name fail here, one line)."""
    from rvpo.runs import RunDirError, check_run_root

    try:
        check_run_root(spec.root)
    except RunDirError as e:
        raise UserError(str(e).replace("a run directory", "the experiment folder")) from None


def run(args) -> int:
    from rvpo.experiment.spec import ExperimentError
    from rvpo.train.config import ConfigError

    spec = _spec(args)
    try:
        if args.dry_run:
            print(_plan_text(spec))
            return 0
        _check_out(spec)
        if not args.verbose:
            from rvpo.cli.train import quiet

            quiet()
        from rvpo.experiment.report import finish
        from rvpo.experiment.runner import run_experiment
        from rvpo.model.loading import ModelNotFoundError

        t0 = time.perf_counter()
        res = None
        if not args.report_only:
            try:
                res = run_experiment(spec, progress=not args.quiet, log=(lambda m: None) if args.quiet else None)
            except (ConfigError, ModelNotFoundError, FileNotFoundError) as e:
                raise UserError(str(e)) from None
        report, summary = finish(spec, wall_session=time.perf_counter() - t0)
    except ExperimentError as e:
        raise UserError(str(e)) from None
    done, planned = summary["runs_finished"], summary["runs_planned"]
    for c in summary["comparisons"]:
        print(f"{c['label']} vs {c['vs']} on {c['metric']}: diff {c['diff']:+.3f} "
              f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}], p = {c['p']:.3g}: {c['verdict']}")
    print(f"{done}/{planned} runs finished; report: {report}")
    if res is not None and res.interrupted:
        cmd = " ".join(["rvpo experiment", *sys.argv[2:]]) if sys.argv[1:2] == ["experiment"] else \
            f"rvpo experiment {args.config}"
        sys.stderr.write(f"interrupted; continue with: {cmd}\n")
        return 130
    return 0
