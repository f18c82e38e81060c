"""``ctseg agreement --workspace W [--json]``: how well the readers agree with each other, with the final
(adjudicated) maps, and how well the model agrees with the final maps, per class (see
``ctseg_core.agreement``): mean Dice, and the Bland-Altman numbers of the volume differences."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KIND_TITLES = {"inter_reader": "reader vs reader", "reader_vs_final": "reader vs final",
               "model_vs_final": "model vs final"}


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def print_table(report: dict) -> None:
    print(f"workspace {report['workspace']}: {report['cases']} case(s) with comparisons")
    print(f"{'comparison':<18}{'class':<16}{'n':>4}{'Dice':>7}{'bias mL':>10}{'SD mL':>9}  limits of agreement mL")
    for kind, rows in report["summary"].items():
        for key, row in rows.items():
            if not row["n"]:
                continue
            loa = row["limits_of_agreement_ml"]
            print(f"{KIND_TITLES[kind]:<18}{key:<16}{row['n']:>4}{_num(row['dice_mean'], '.3f'):>7}"
                  f"{_num(row['volume_bias_ml'], '+.2f'):>10}{_num(row['volume_sd_ml'], '.2f'):>9}  "
                  + (f"{loa[0]:+.2f} .. {loa[1]:+.2f}" if loa else "-"))
    for problem in report["problems"]:
        print(f"left out: {problem}")


def _run(args) -> int:
    from ctseg_core.agreement import workspace_agreement
    from ctseg_core.store import Workspace, default_root

    report = workspace_agreement(Workspace(args.workspace or default_root(), create=False))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_table(report)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("agreement", help="inter-reader, reader-vs-final and model-vs-final agreement",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, help="the workspace folder (default: $CTSEG_WORKSPACE or ~/ctseg-workspace)")
    p.add_argument("--json", action="store_true", help="the whole report (every pair of maps) as JSON")
    p.set_defaults(func=_run)
