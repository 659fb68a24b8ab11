"""``le-ray prepare`` (= ``python -m le_ray.prepare``): prepare the data as a sweep would and print its audit.

The same preparation (filter, encode, balance, split) and the same experiment audit as ``le-ray repeats``
(:mod:`le_ray.sweep.audit`): effective settings per loss, train / evaluation rows and clicks per condition
(after balancing), and every finding; plus the source's row counts, stage timings and, for CTR data,
the filter statistics plot. Exit status: 0 when the audit found no error, 2 when it found one (the same
refusal ``le-ray repeats`` would give), so a script can use ``le-ray prepare`` as a gate before a sweep.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from le_ray.atomic import atomic_write_json
from le_ray.sweep.audit import audit_experiment
from le_ray.sweep.audit_text import audit_text
from le_ray.sweep.runtime_estimate import too_slow_before_preparation
from le_ray.cli.args import (add_config_arguments, command_parser, config_shadows_provenance, exit_on_user_error,
                             with_default_profile)
from le_ray.data.filters import filter_mode_of
from le_ray.data.prepare import prepare_with_source
from le_ray.errors import UserError

__all__ = ["main"]


def _parser():
    parser = command_parser("prepare")
    add_config_arguments(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the audit, row counts and timings as JSON")
    parser.add_argument("--output-dir", help="where the filter statistics plot of CTR data goes, under "
                        "prepare/<source>/<filter>/ (default output.dir, 'output')")
    return parser


@exit_on_user_error
def main(argv: Sequence[str] | None = None) -> int:
    args = with_default_profile(_parser().parse_args(argv))
    cfg, shadows, origins = config_shadows_provenance(args)
    if args.json and Path(args.json).is_dir():
        raise UserError(f"--json {args.json!r} is a folder; expected the name of a file for the audit JSON")
    verdict = ("would start only because repeats.allow_unsound is set" if cfg.repeats.allow_unsound
               else "would be refused")
    slow = too_slow_before_preparation(cfg)
    if slow is not None:  # what the audit will say, before minutes of generating rows for it
        print(f"note: a sweep of this config {verdict} here (error too_slow_here): {slow}. Preparing the data anyway "
              "for its audit; Ctrl-C stops it", flush=True)
    data, ctr = prepare_with_source(cfg)
    meta = data.meta
    rows = (f"{meta.source_rows:,} generated rows" if cfg.data.source == "synthetic" else
            f"{meta.source_rows:,} source rows, {meta.kept_rows:,} kept by the filter")  # synthetic rows: no filter
    print(f"{cfg.source_key}: {rows}, {meta.labelled_rows:,} after balancing -> train {len(data.train):,} / eval "
          f"{len(data.eval):,} / test {0 if data.test is None else len(data.test):,} rows; {data.num_conditions} "
          "conditions")
    print("timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in meta.stage_seconds.items())
          + f"; whole preparation {meta.prepare_seconds:.3f}")
    audit = audit_experiment(cfg, [data], shadows, origins)
    print(audit_text(audit, max_conditions=None))
    if ctr is not None and cfg.plots.enabled and cfg.plots.ctr_filter_stats:
        from le_ray.report import plots

        path = Path(args.output_dir or cfg.output.dir) / "prepare" / cfg.source_key / filter_mode_of(cfg) / "filter_stats.png"
        plots.save_figure(plots.plot_filter_stats(ctr.filter_stats), path, dpi=cfg.plots.dpi)
        print(f"filter statistics plot: {path}")
    if args.json:
        kept = ([] if ctr is None else [{"value": v, "id": int(i), "rows": int(r), "clicks": int(c)} for v, i, r, c in
                                        ctr.condition_table.sort("id").select("value", "id", "rows", "clicks").iter_rows()])
        atomic_write_json(args.json, {"source_rows": meta.source_rows, "kept_rows": meta.kept_rows,
                                      "labelled_rows": meta.labelled_rows, "timings": dict(meta.stage_seconds),
                                      "conditions": kept, "audit": audit.to_record()})
        print(f"audit, row counts and timings (JSON): {args.json}")
    if audit.errors:
        print(f"le-ray prepare: the experiment audit found {len(audit.errors)} error(s) "
              f"({', '.join(sorted({f.code for f in audit.errors}))}); a sweep of this config {verdict}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
