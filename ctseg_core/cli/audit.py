"""``ctseg audit --workspace W [--case ID] [-o OUT.csv|OUT.jsonl] [--replay CASE [--map MAP]]``: the
workspace's audit trail (who did what to which case, when, on which slices, with which model).

Without options the entries are printed one per line; ``-o`` exports them (CSV without voxel data, or
JSON lines with everything); ``--replay CASE`` rebuilds every saved state of one map of the case from the
log (``final`` by default, ``prediction``, or ``reader/<name>``) and checks it against the map on disk."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _replay(ws, case_id: str, map_name: str, as_json: bool) -> int:
    from ctseg_core.store.audit import array_hash, replay
    from ctseg_core.store.case import FINAL, PREDICTION
    from ctseg_core.store.readers import READER_MAP, reader_folder

    case = ws.case(case_id)
    steps = replay(ws.audit, case.id, map_name, case.geometry.shape)
    if map_name.startswith("reader/"):
        path = reader_folder(case.folder, map_name.removeprefix("reader/")) / READER_MAP
    else:
        path = case.folder / (PREDICTION if map_name == "prediction" else FINAL)
    on_disk = case._read(path, None)
    same = on_disk is not None and bool(steps) and array_hash(on_disk.array) == array_hash(steps[-1].labels)
    rows = [{"time": s.entry["time"], "op": s.entry["op"], "who": s.entry.get("who", ""), "edits_before": s.edits,
             "voxels_changed": s.entry.get("voxels", 0), "labelled_voxels": int((s.labels > 0).sum())}
            for s in steps]
    if as_json:
        print(json.dumps({"case": case.id, "map": map_name, "states": rows, "matches_file": same}, indent=1))
    else:
        for r in rows:
            print(f"{r['time'][:19]}  {r['op']:<10} {r['who']:<16} edits {r['edits_before']:>4}  "
                  f"changed {r['voxels_changed']:>8}  labelled {r['labelled_voxels']:>8}")
        print(f"{len(rows)} saved state(s); the last one {'matches' if same else 'DOES NOT match'} {path.name}")
    return 0 if same else 1


def _run(args) -> int:
    from ctseg_core.store import Workspace, default_root
    from ctseg_core.store.audit import summary_row

    ws = Workspace(args.workspace or default_root(), create=False)
    if args.replay:
        return _replay(ws, args.replay, args.map, args.json)
    if args.output:
        n = ws.audit.export(args.output, case=args.case)
        print(f"{n} audit entries written to {args.output}")
        return 0
    for entry in ws.audit.entries(args.case):
        if args.json:
            print(json.dumps({k: v for k, v in entry.items() if k != "deltas"}))
        else:
            print("  ".join(cell for cell in summary_row(entry) if cell))
    return 0


def register(subparsers) -> None:
    from ctseg_core.cli import output_file

    p = subparsers.add_parser("audit", help="the workspace's audit trail: list, export, replay a case's history",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workspace", type=Path, help="the workspace folder (default: $CTSEG_WORKSPACE or ~/ctseg-workspace)")
    p.add_argument("--case", help="only this case's entries")
    p.add_argument("-o", "--output", type=output_file, help="export to OUT.csv (no voxel data) or OUT.jsonl")
    p.add_argument("--replay", metavar="CASE", help="rebuild the saved states of a map of CASE from the log")
    p.add_argument("--map", default="final", help="with --replay: final (default), prediction or reader/<name>")
    p.add_argument("--json", action="store_true", help="JSON lines (entries without voxel data) / replay as JSON")
    p.set_defaults(func=_run)
