"""``ctseg pacs ...``: the PACS settings, query/retrieve, the inbox and the outbox from the command line.

    ctseg pacs config [--node NAME --ae-title AE --host H --port P [--tls] [--query] [--send]]
    ctseg pacs echo [NODE]
    ctseg pacs find [--patient-id ID] [--patient-name NAME] [--date YYYYMMDD[-YYYYMMDD]] [--json]
    ctseg pacs retrieve STUDY_UID [--series UID] [--mode move|get]
    ctseg pacs inbox [--json]
    ctseg pacs send CASE_ID [--no-sr]          # an approved case's DICOM SEG (and SR) into the outbox, try now
    ctseg pacs outbox [--retry ID] [--remove ID] [--send-due] [--json]

C-MOVE sends to this ctseg's listener (``ctseg listen``, or the app's), which must be running and known
to the PACS; ``--mode get`` needs no listener.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("pacs", help="PACS settings, query/retrieve, inbox, outbox (see ctseg listen)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, help="the workspace folder (default $CTSEG_WORKSPACE or ~/ctseg-workspace)")
    p.add_argument("--config", type=Path, help="the PACS settings file (default W/pacs.toml)")
    sub = p.add_subparsers(dest="pacs_command", required=True)
    c = sub.add_parser("config", help="show the settings; with --node add or change a node")
    c.add_argument("--node", help="node name to add or change")
    c.add_argument("--ae-title", dest="node_ae_title", help="the node's AE title")
    c.add_argument("--host", dest="node_host", help="the node's host name or address")
    c.add_argument("--port", dest="node_port", type=int, help="the node's DICOM port")
    c.add_argument("--tls", action="store_true", help="connect to the node with TLS")
    c.add_argument("--query", action="store_true", help="make it the query/retrieve node")
    c.add_argument("--send", action="store_true", help="make it the destination of approved results")
    c.add_argument("--local-ae-title", help="this ctseg's AE title")
    c.add_argument("--local-port", type=int, help="this ctseg's listening port")
    c.add_argument("--retrieve", choices=("move", "get"))
    e = sub.add_parser("echo", help="C-ECHO a node (default: the query node)")
    e.add_argument("node", nargs="?")
    f = sub.add_parser("find", help="search the query node for CT studies (C-FIND)")
    f.add_argument("--patient-id", default="")
    f.add_argument("--patient-name", default="", help="wildcards * and ? allowed")
    f.add_argument("--date", default="", help="YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    f.add_argument("--series", action="store_true", help="list each study's series too")
    f.add_argument("--json", action="store_true")
    r = sub.add_parser("retrieve", help="pull a study (or series) from the query node (C-MOVE or C-GET)")
    r.add_argument("study_uid")
    r.add_argument("--series", help="only this series")
    r.add_argument("--mode", choices=("move", "get"), help="default from the settings")
    i = sub.add_parser("inbox", help="the received series and the instances kept aside")
    i.add_argument("--json", action="store_true")
    s = sub.add_parser("send", help="put an approved case's DICOM SEG (and SR) in the outbox and try to send it")
    s.add_argument("case_id")
    s.add_argument("--no-sr", action="store_true", help="send the DICOM SEG only")
    s.add_argument("--to", help="destination node (default: the settings' send node)")
    o = sub.add_parser("outbox", help="what waits to be sent, and what was sent")
    o.add_argument("--retry", metavar="ID", help="try this item again now")
    o.add_argument("--remove", metavar="ID", help="remove this item")
    o.add_argument("--send-due", action="store_true", help="try every item that is due now")
    o.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ctseg_core.cli.listen import load_settings

    root, config = load_settings(args)
    return {"config": _config, "echo": _echo, "find": _find, "retrieve": _retrieve, "inbox": _inbox,
            "send": _send, "outbox": _outbox}[args.pacs_command](args, root, config)


def _config(args, root, config) -> int:
    from ctseg_core.pacs.config import Node, config_path, save_config

    path = args.config or config_path(root)
    changed = False
    if args.node:
        old = config.nodes.get(args.node)
        node = Node(args.node, args.node_ae_title or (old.ae_title if old else ""),
                    args.node_host or (old.host if old else ""), args.node_port or (old.port if old else 0),
                    args.tls or (old.tls if old else False))
        config.nodes[args.node] = node.check()
        if args.query or not config.query_node:
            config.query_node = args.node
        if args.send or not config.send_node:
            config.send_node = args.node
        changed = True
    for attr, value in (("ae_title", args.local_ae_title), ("port", args.local_port)):
        if value is not None:
            setattr(config.local, attr, value)
            changed = True
    if args.retrieve:
        config.retrieve, changed = args.retrieve, True
    if changed:
        save_config(config, path)
        print(f"wrote {path}", file=sys.stderr)
    print(f"# {path}" + ("" if path.exists() else " (not written yet: defaults)"))
    print(config.to_toml(), end="")
    return 0


def _echo(args, root, config) -> int:
    from ctseg_core.pacs.net import echo

    node = config.node(args.node, "node") if args.node else config.query()
    echo(node, config)
    print(f"{node.describe()} answered C-ECHO")
    return 0


def _find(args, root, config) -> int:
    from ctseg_core.pacs.query import find_series, find_studies

    studies = find_studies(config, args.patient_id, args.patient_name, args.date)
    series = {s.study_uid: find_series(config, s.study_uid) for s in studies} if args.series else {}
    if args.json:
        print(json.dumps([{**asdict(s), "series": [asdict(x) for x in series.get(s.study_uid, [])]}
                          for s in studies], indent=2))
        return 0
    for s in studies:
        print(f"{s.study_date or '--------'}  {s.patient_id:<16} {s.patient_name:<24} {s.study_description:<24} "
              f"{s.n_series or '?'} series, {s.n_instances or '?'} instances  {s.study_uid}")
        for x in series.get(s.study_uid, []):
            print(f"    {x.modality:<4} #{x.series_number:<4} {x.series_description:<30} {x.n_instances or '?'} "
                  f"instances  {x.series_uid}")
    print(f"{len(studies)} CT stud{'y' if len(studies) == 1 else 'ies'} found", file=sys.stderr)
    return 0


def _progress(done: int, total: int, message: str = "") -> None:
    print(f"\r{message}", end="", file=sys.stderr, flush=True)


def _retrieve(args, root, config) -> int:
    from ctseg_core.pacs.query import describe_result, retrieve

    mode = args.mode or config.retrieve
    result = retrieve(config, args.study_uid, args.series, workspace_root=root, mode=mode, progress=_progress)
    print(file=sys.stderr)
    print(describe_result(result))
    if mode == "get":
        print(f"{len(result.series)} series filed into {root / 'inbox'} and queued; `ctseg listen` (or the app's "
              "listener) segments them")
    else:
        print(f"sent to {config.local.ae_title}: the listener files and segments them")
    return 0


def _inbox(args, root, config) -> int:
    from ctseg_core.pacs.inbox import Inbox

    inbox = Inbox(root)
    entries, aside = inbox.entries(), inbox.set_aside_notes()
    if args.json:
        print(json.dumps({"series": [asdict(e) for e in entries],
                          "set_aside": [{"file": str(p), "note": n} for p, n in aside]}, indent=2))
        return 0
    for e in entries:
        print(f"{e.last_received.replace('T', ' ')}  {e.describe():<60} {e.status_text}"
              + (f"  case {e.case_id}" if e.case_id else ""))
    for path, note in aside:
        print(f"set aside: {path.name}: {note.splitlines()[-1]}")
    return 0


def _send(args, root, config) -> int:
    from ctseg_core.pacs.outbox import Outbox, queue_case, send_item

    item = queue_case(root, args.case_id, config, include_sr=not args.no_sr, destination=args.to)
    print(f"queued {item.id}: {item.description}", file=sys.stderr)
    item = send_item(Outbox(root), item, config)
    print(f"{item.id}: {item.status_text()}")
    if item.state == "pending":
        print("it stays in the outbox: `ctseg listen` or the app retries it with back-off", file=sys.stderr)
    return 0 if item.state in ("sent", "pending") else 1


def _outbox(args, root, config) -> int:
    from ctseg_core.pacs.outbox import Outbox, send_item

    outbox = Outbox(root)
    if args.retry:
        send_item(outbox, outbox.retry_now(args.retry), config)
    if args.remove:
        outbox.remove(args.remove)
    if args.send_due:
        for item in outbox.due():
            send_item(outbox, item, config)
    items = outbox.items()
    if args.json:
        print(json.dumps([asdict(i) for i in items], indent=2))
        return 0
    for i in items:
        print(f"{i.id}  case {i.case_id:<40} to {i.destination:<10} {', '.join(i.files):<16} {i.status_text()}")
    return 0
