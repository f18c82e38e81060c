"""What every DICOM exchange needs: an association with a node (TLS where configured), and C-ECHO.

TLS uses pynetdicom's own support (``tls_args`` on associating, ``ssl_context`` for the listener): a
Python ``ssl.SSLContext`` built from the PEM files of ``PacsConfig.tls``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator

from ctseg_core.errors import PacsError
from ctseg_core.pacs.config import Node, PacsConfig

ACSE_TIMEOUT_S = 15
DIMSE_TIMEOUT_S = 60
NETWORK_TIMEOUT_S = 30

# pynetdicom logs every PDU at INFO; the listener and the app log what matters themselves
logging.getLogger("pynetdicom").setLevel(logging.WARNING)


def client_ssl_context(config: PacsConfig) -> ssl.SSLContext:
    """For connecting to a node with ``tls = true``: the peer's certificate is checked against
    ``tls.ca_certificates`` (else the system's CAs); ours is presented when configured."""
    tls = config.tls
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_certificates or None)
        ctx.check_hostname = False  # PACS nodes are usually addressed by IP; the certificate chain is checked
        if tls.configured:
            ctx.load_cert_chain(tls.certificate, tls.private_key)
    except (OSError, ssl.SSLError) as exc:
        raise PacsError(f"cannot set up TLS ({exc})", getattr(exc, "filename", None)) from exc
    return ctx


def server_ssl_context(config: PacsConfig) -> ssl.SSLContext:
    """For the listener: our certificate; client certificates are required when CAs are configured."""
    tls = config.tls
    if not tls.configured:
        raise PacsError("a TLS listener needs tls.certificate and tls.private_key")
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.ca_certificates or None)
        ctx.load_cert_chain(tls.certificate, tls.private_key)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.ca_certificates else ssl.CERT_NONE
    except (OSError, ssl.SSLError) as exc:
        raise PacsError(f"cannot set up TLS ({exc})", getattr(exc, "filename", None)) from exc
    return ctx


def make_ae(config: PacsConfig):
    from pynetdicom import AE

    ae = AE(ae_title=config.local.ae_title)
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = ACSE_TIMEOUT_S, DIMSE_TIMEOUT_S, NETWORK_TIMEOUT_S
    ae.connection_timeout = ACSE_TIMEOUT_S
    return ae


@contextlib.contextmanager
def associate(ae, node: Node, config: PacsConfig, **kw) -> Iterator:
    """An established association with ``node`` (released on leaving); ``PacsError`` when it fails:
    ``transient`` when the node could not be reached, not when it refused us."""
    tls_args = (client_ssl_context(config), None) if node.tls else None
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, tls_args=tls_args, **kw)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise PacsError(f"{node.describe()} rejected the association (is {config.local.ae_title!r} "
                            "known to it, and its AE title right?)")
        raise PacsError(f"{node.describe()} could not be reached (is it running, are host and port right?)",
                        transient=True)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def echo(node: Node, config: PacsConfig) -> None:
    """C-ECHO ``node``; ``PacsError`` unless it answers with success."""
    from pynetdicom.sop_class import Verification

    ae = make_ae(config)
    ae.add_requested_context(Verification)
    with associate(ae, node, config) as assoc:
        status = assoc.send_c_echo()
    check_status(status, f"C-ECHO to {node.describe()}")


def check_status(status, what: str) -> int:
    """The status value of a DIMSE response; ``PacsError`` when there is none (connection lost) or it
    is a failure."""
    if status is None or "Status" not in status:
        raise PacsError(f"{what}: no answer (connection lost or timed out)", transient=True)
    value = int(status.Status)
    if value not in (0x0000, 0xFF00, 0xFF01) and not 0xB000 <= value <= 0xBFFF:
        comment = f": {status.ErrorComment}" if "ErrorComment" in status else ""
        raise PacsError(f"{what}: refused with status 0x{value:04X}{comment}")
    return value
