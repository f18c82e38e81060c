"""Sending DICOM files to a node (C-STORE SCU): the outbox's transport, and how tests fill a PACS."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ctseg_core.errors import PacsError
from ctseg_core.pacs.config import Node, PacsConfig
from ctseg_core.pacs.net import associate, check_status, make_ae


def read_dataset(path: Path):
    import pydicom

    try:
        return pydicom.dcmread(path)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        raise PacsError(f"cannot read the file to send ({exc})", path) from exc


def store_files(node: Node, config: PacsConfig, paths: Sequence[str | Path],
                progress: Callable[[int, int, str], None] | None = None) -> list[int]:
    """C-STORE every file of ``paths`` to ``node`` on one association; the statuses, in order.

    ``PacsError`` (``transient``) when the node cannot be reached or the connection drops; ``PacsError``
    (not transient) when it refuses an instance."""
    datasets = [read_dataset(Path(p)) for p in paths]
    ae = make_ae(config)
    for pair in sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in datasets}):
        ae.add_requested_context(*pair)
    statuses = []
    with associate(ae, node, config) as assoc:
        for i, (path, ds) in enumerate(zip(paths, datasets), 1):
            try:
                status = assoc.send_c_store(ds)
            except ValueError as exc:  # no accepted presentation context for this SOP class / syntax
                raise PacsError(f"{node.describe()} does not accept {Path(path).name} ({exc})") from exc
            except RuntimeError as exc:  # the association ended under us
                raise PacsError(f"the connection to {node.describe()} was lost ({exc})", transient=True) from exc
            statuses.append(check_status(status, f"C-STORE of {Path(path).name} to {node.describe()}"))
            if progress is not None:
                progress(i, len(datasets), f"sent {i} of {len(datasets)} to {node.name}")
    return statuses
