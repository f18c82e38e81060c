"""The PACS settings: this ctseg's own DICOM node and the remote nodes it talks to, in a TOML file.

The file is ``<workspace>/pacs.toml`` (``config_path``); the app's settings dialog and the command line
read and write the same file. Example::

    [local]                 # this ctseg (the C-STORE SCP that ``ctseg listen`` runs)
    ae_title = "CTSEG"
    host = "0.0.0.0"        # address to listen on
    port = 11112
    settle_s = 5.0          # a series is complete when no instance arrived for this long
    segment = true          # segment complete series in the background with the active model

    [tls]                   # TLS for the listener and for nodes marked tls = true
    certificate = ""        # PEM: this node's certificate (the listener needs it)
    private_key = ""
    ca_certificates = ""    # PEM: CAs trusted to sign the peers' certificates

    [query]
    node = "pacs"           # where C-FIND / C-MOVE / C-GET go
    retrieve = "move"       # "move": the PACS sends to this listener (it must know our AE title);
                            # "get": the images come back on the query's own association

    [send]
    node = "pacs"           # where approved results (DICOM SEG, SR) are sent
    on_approval = true      # queue a case's results when it is approved in the app
    include_sr = true

    [nodes.pacs]
    ae_title = "ORTHANC"
    host = "pacs.example.org"
    port = 4242
    tls = false
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from ctseg_core.atomic import atomic_write_text
from ctseg_core.errors import PacsError

CONFIG_NAME = "pacs.toml"
AE_TITLE = re.compile(r"[\x20-\x5b\x5d-\x7e]{1,16}")  # 16 printable characters, no backslash
RETRIEVE_MODES = ("move", "get")


def config_path(workspace_root: str | Path) -> Path:
    return Path(workspace_root).expanduser() / CONFIG_NAME


def check_ae_title(title: str, what: str = "AE title") -> str:
    title = str(title).strip()
    if not AE_TITLE.fullmatch(title):
        raise PacsError(f"{what} {title!r} is not a DICOM AE title (1 to 16 printable characters, no backslash)")
    return title


def check_port(port, what: str = "port") -> int:
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise PacsError(f"{what} {port!r} is not a number") from None
    if not 1 <= value <= 65535:
        raise PacsError(f"{what} {value} is outside 1..65535")
    return value


@dataclass
class Node:
    """A remote DICOM node (a PACS, a workstation)."""

    name: str
    ae_title: str
    host: str
    port: int
    tls: bool = False

    def describe(self) -> str:
        return f"{self.name} ({self.ae_title} at {self.host}:{self.port}{', TLS' if self.tls else ''})"

    def check(self) -> "Node":
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", self.name):
            raise PacsError(f"node name {self.name!r}: use letters, digits, '-' and '_'")
        self.ae_title = check_ae_title(self.ae_title, f"node {self.name}: AE title")
        self.port = check_port(self.port, f"node {self.name}: port")
        if not str(self.host).strip():
            raise PacsError(f"node {self.name}: no host given")
        self.host = str(self.host).strip()
        self.tls = bool(self.tls)
        return self


@dataclass
class LocalNode:
    ae_title: str = "CTSEG"
    host: str = "0.0.0.0"
    port: int = 11112
    settle_s: float = 5.0
    segment: bool = True


@dataclass
class TlsFiles:
    certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.certificate and self.private_key)


@dataclass
class PacsConfig:
    local: LocalNode = field(default_factory=LocalNode)
    tls: TlsFiles = field(default_factory=TlsFiles)
    nodes: dict[str, Node] = field(default_factory=dict)
    query_node: str = ""
    retrieve: str = "move"
    send_node: str = ""
    send_on_approval: bool = True
    include_sr: bool = True
    listener_tls: bool = False  # the listener accepts TLS connections only (needs tls.certificate and key)

    # ---- lookups ----
    def node(self, name: str, role: str = "node") -> Node:
        if not name:
            raise PacsError(f"no {role} is configured (PACS settings)")
        if name not in self.nodes:
            known = ", ".join(self.nodes) or "none"
            raise PacsError(f"the {role} {name!r} is not among the configured nodes ({known})")
        return self.nodes[name]

    def query(self) -> Node:
        return self.node(self.query_node, "query/retrieve node")

    def destination(self) -> Node:
        return self.node(self.send_node, "send destination")

    def check(self) -> "PacsConfig":
        self.local.ae_title = check_ae_title(self.local.ae_title, "this ctseg's AE title")
        self.local.port = check_port(self.local.port, "listening port")
        self.local.settle_s = float(self.local.settle_s)
        if not 0.1 <= self.local.settle_s <= 3600:
            raise PacsError(f"settle_s {self.local.settle_s} is outside 0.1..3600 seconds")
        for node in self.nodes.values():
            node.check()
        if self.retrieve not in RETRIEVE_MODES:
            raise PacsError(f"retrieve must be one of {', '.join(RETRIEVE_MODES)}, not {self.retrieve!r}")
        for role, name in (("query/retrieve node", self.query_node), ("send destination", self.send_node)):
            if name and name not in self.nodes:
                raise PacsError(f"the {role} {name!r} is not among the configured nodes")
        if self.listener_tls and not self.tls.configured:
            raise PacsError("a TLS listener needs tls.certificate and tls.private_key")
        return self

    # ---- TOML ----
    @classmethod
    def from_dict(cls, data: dict) -> "PacsConfig":
        def pick(klass, table):
            table = table or {}
            known = {f.name for f in fields(klass)}
            unknown = set(table) - known
            if unknown:
                raise PacsError(f"unknown setting(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})")
            return klass(**table)

        local = dict(data.get("local", {}))
        listener_tls = bool(local.pop("tls", False))
        nodes = {}
        for name, table in (data.get("nodes") or {}).items():
            table = dict(table)
            nodes[name] = Node(name=name, ae_title=table.pop("ae_title", ""), host=table.pop("host", ""),
                               port=table.pop("port", 0), tls=table.pop("tls", False))
            if table:
                raise PacsError(f"node {name}: unknown setting(s) {', '.join(sorted(table))}")
        query, send = data.get("query", {}) or {}, data.get("send", {}) or {}
        return cls(local=pick(LocalNode, local), tls=pick(TlsFiles, data.get("tls")), nodes=nodes,
                   query_node=str(query.get("node", "")), retrieve=str(query.get("retrieve", "move")),
                   send_node=str(send.get("node", "")), send_on_approval=bool(send.get("on_approval", True)),
                   include_sr=bool(send.get("include_sr", True)), listener_tls=listener_tls).check()

    def to_toml(self) -> str:
        local = dict(vars(self.local))
        local["tls"] = self.listener_tls
        tables = [("local", local), ("tls", vars(self.tls)),
                  ("query", {"node": self.query_node, "retrieve": self.retrieve}),
                  ("send", {"node": self.send_node, "on_approval": self.send_on_approval,
                            "include_sr": self.include_sr})]
        tables += [(f"nodes.{n.name}", {"ae_title": n.ae_title, "host": n.host, "port": n.port, "tls": n.tls})
                   for n in self.nodes.values()]
        out = ["# ctseg PACS settings (written by ctseg; see ctseg_core/pacs/config.py for every key)"]
        for name, table in tables:
            out.append(f"\n[{name}]")
            out += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
        return "\n".join(out) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def load_config(path: str | Path) -> PacsConfig:
    """The settings in ``path``; defaults (no remote node) when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return PacsConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PacsError(f"cannot read the PACS settings ({exc})", path) from exc
    except tomllib.TOMLDecodeError as exc:
        raise PacsError(f"the PACS settings are not valid TOML ({exc})", path) from exc
    try:
        return PacsConfig.from_dict(data)
    except PacsError as exc:
        raise PacsError(exc.problem, path) from exc
    except (TypeError, ValueError) as exc:
        raise PacsError(f"the PACS settings are invalid ({exc})", path) from exc


def save_config(config: PacsConfig, path: str | Path) -> Path:
    config.check()
    atomic_write_text(path, config.to_toml())
    return Path(path)
