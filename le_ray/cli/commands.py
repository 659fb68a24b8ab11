"""Every ``le-ray`` subcommand: its module, one-line summary, description, examples and environment.

Every example runs as written (``tests/test_docs.py`` runs or resolves each one), and run times quoted here
are the measured ones the README dates (:data:`QUICKSTART_TIME`).

One table, so that ``le-ray --help`` lists the commands without importing them (torch takes seconds to
import) and every command's own parser (:func:`le_ray.cli.args.command_parser`) shows the same
``prog`` (``le-ray <command>``) whether it is started as ``le-ray <command>`` or ``python -m <module>``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Command", "COMMANDS", "ENVIRONMENT", "QUICKSTART_TIME"]

#: Wall time of the quickstart sweep as measured (README: 1 min 04 s to 1 min 06 s on 2 CPU cores, 2026-12-05).
QUICKSTART_TIME = "1 to 1½ minutes on 2 cores"

#: Environment variables le_ray reads, and what for.
ENVIRONMENT: dict[str, str] = {
    "LE_RAY_RESULTS": "default results folder of sweeps (below --results-dir, above output.results_dir)",
    "LE_RAY_SAMPLE_DATA": "folder with the shipped Avazu / Criteo sample rows for the test suite and bench/ (default "
                          "../shared/data); the *_sample profiles read ../shared/data relative to the working folder",
    "RAY_ADDRESS": "a running Ray cluster to use (set by `ray job submit`); unset: a new local instance on 127.0.0.1",
    "RAY_AUTH_MODE": "`token` for clusters with token authentication (ray start and ray job submit, both sides)",
    "RAY_AUTH_TOKEN": "the cluster's token (or RAY_AUTH_TOKEN_PATH: a file holding it)",
    "LE_RAY_TRIAL_LOG_LEVEL": "log level inside Ray trial tasks (default WARNING)",
    "LE_RAY_GIT_COMMIT": "the git commit to record in manifests when the code runs outside a checkout (jobs/submit.sh)",
    "CUDA_VISIBLE_DEVICES": "GPUs torch may use (Ray sets it per task)",
}


@dataclass(frozen=True)
class Command:
    """One subcommand: ``name`` (``le-ray <name>``), the module that runs it, help texts, examples, env."""
    name: str
    module: str
    summary: str
    description: str
    examples: tuple[tuple[str, str], ...]
    environment: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("repeats", "le_ray.repeats", "the sweep: every (seed x loss) trial as a Ray task, then paired statistics",
            "Repeat every (seed x loss) trial as a Ray task (local Ray, or the cluster of RAY_ADDRESS / "
            "ray.address), store each trial as it finishes, and report paired Wilcoxon tests, per-condition "
            "calibration tests and a written verdict. An audit checks the experiment before any training. "
            "Without --profile/--config it runs the quickstart profile; --name of a stored sweep without "
            "--profile/--config resumes that sweep with the config it stores (a name with no stored sweep is refused).",
            (("le-ray repeats", f"the quickstart sweep on embedded synthetic data ({QUICKSTART_TIME})"),
             ("le-ray repeats --profile avazu_sample --set ctr.datasets.avazu.train_path=data/avazu/my.csv "
              "--set 'training.by_loss.*.batch_size=64'",
              "a sweep on your own Avazu-format CSV, every loss with batch 64"),
             ("le-ray repeats --name my-sweep --results-dir results", "resume a stored sweep with the config it stores"),
             ("le-ray repeats --name my-sweep --extend --set repeats.num_runs=12", "add seeds to a stored sweep")),
            ("LE_RAY_RESULTS", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "LE_RAY_TRIAL_LOG_LEVEL",
             "CUDA_VISIBLE_DEVICES")),
    Command("tune", "le_ray.tune", "tune each loss with Ray Tune, then test the best settings on fresh seeds",
            "For each loss, a Ray Tune search over tune.space.<loss> on a validation split carved from the "
            "train split, with seeds the test never uses; then a repeats sweep of every loss's best settings "
            "on the test seeds, and the usual report with a tuning section.",
            (("le-ray tune --profile quickstart_tune", "the small tune-then-test demo: 6 samples per loss, then the "
              "quickstart's 10-seed sweep"),
             ("le-ray tune --profile quickstart_tune --name my-tune", "resume an interrupted tune by its name")),
            ("LE_RAY_RESULTS", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")),
    Command("run", "le_ray.run", "one diagnostic run: each loss trained once, every plot, table and log",
            "Train each configured loss once and write the reference layout of plots, tables, logs and a "
            "report.md into a new folder (never over an earlier run unless --overwrite).",
            (("le-ray run --profile quickstart", "a diagnostic run of the quickstart data"),
             ("le-ray run --profile avazu_sample --name avazu-look", "a named run on the shipped Avazu sample"),
             ("le-ray run --set training.loss_mode=le --set training.epochs=2",
              "a quick look at LE alone (no --profile: the quickstart data, as for repeats)")),
            ("CUDA_VISIBLE_DEVICES",)),
    Command("prepare", "le_ray.prepare", "run the data pipeline alone: the experiment audit and per-condition table",
            "Prepare the data as a sweep would (filter, encode, balance, split) and print the experiment audit: "
            "effective settings per loss, rows and clicks per ad, and every finding. Exits 2 when the audit "
            "finds an error (the sweep would be refused), so it can gate a script.",
            (("le-ray prepare --profile avazu_sample", "check the shipped Avazu sample before a sweep"),
             ("le-ray prepare --profile criteo_sample --json audit.json", "also write the audit as JSON"))),
    Command("report", "le_ray.report.__main__", "rebuild a sweep's report (summary.md, tables, plots) from its trial files",
            "Rebuild summary.md, the tables and the plots of a sweep folder from its stored trial files, "
            "without training, with the config the sweep stores. To change a report setting (report.rate_bands, "
            "plots.*, comparison.*, repeats.min_eval_clicks), rerun the finished sweep by name with --set: "
            "le-ray repeats then trains nothing and only reports.",
            (("le-ray report results/quickstart-20261201-120000", "rebuild one sweep's report"),
             ("le-ray repeats --name quickstart-20261201-120000 --set 'report.rate_bands=[0.0001,0.001,0.01]'",
              "report a finished sweep again with other rate bands (no training)"))),
    Command("compare", "le_ray.runners.compare_runs", "per-condition comparison tables from two stored diagnostic runs",
            "Compare two loss folders written by `le-ray run` (per_condition.csv + metrics.json) without "
            "retraining: per-condition calibration, |1 - ratio| and a summary, as CSV and text.",
            (("le-ray compare output/run1/bce/synthetic/small/none output/run1/le/synthetic/small/none",
              "LE vs BCE of one run"),
             ("le-ray compare output/run1/bce/synthetic/small/none output/run2/bce/synthetic/small/none",
              "BCE of two runs (e.g. two learning rates), as bce_baseline / bce_candidate"))),
    Command("compare-sweeps", "le_ray.runners.compare_sweeps",
            "one loss of two stored sweeps, paired by seed on the same data (e.g. LE cold vs LE warm start)",
            "Compare one loss of a baseline sweep with one loss (by default the same) of a candidate sweep, trained "
            "on the same data with the same seeds, without retraining: the paired tests per metric, the per-ad "
            "tests and the verdict of a sweep report, each arm named <loss> (<sweep folder>), and every setting that "
            "differs between the two arms as the first caveat. Refused when a paired seed's data differ.",
            (("le-ray compare-sweeps results/decades-cold results/decades-warm",
              "LE started empty vs LE started full (two decades sweeps, the second with "
              "--set training.cross_batch.warm_start=true)"),
             ("le-ray compare-sweeps results/sweep-a results/sweep-b --loss bce --candidate-loss le",
              "BCE of one sweep vs LE of another"))),
    Command("config", "le_ray.cli.console", "show the resolved config, each loss's effective settings, or the profiles",
            "Resolve a config (defaults, --config file, --profile, --set) and print it as JSON; --effective "
            "prints each loss's resolved training settings; `profiles` lists every profile with its description.",
            (("le-ray config show --profile quickstart --effective", "the training settings each loss really gets"),
             ("le-ray config show --profile quickstart --effective --set 'training.by_loss.*.lr=0.002'",
              "one training key for every loss at once"),
             ("le-ray config profiles", "every profile, what it is for and what it extends"))),
)}
