"""The training process seen from the GUI: ``python -m ctseg_core.train ...`` run by a ``QProcess``.

A crash or out-of-memory there never takes the GUI down; its stdout JSON lines (the protocol of
``ctseg train``: plan, validate, start, step, trained, done, cancelled, error) arrive as ``event``
signals on the GUI thread. ``cancel()`` sends SIGTERM: the process saves its state, prints a
``cancelled`` event and exits 0.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

STDERR_KEEP = 20000  # characters of stderr kept for the error message


def train_arguments(workspace: str | Path, steps: int | None = None, epochs: float | None = None,
                    strategy: str | None = None, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Arguments of ``python`` for one fine-tune of ``workspace`` (None: the command's default)."""
    args = ["-m", "ctseg_core.train", "--workspace", str(workspace)]
    if steps:
        args += ["--steps", str(int(steps))]
    elif epochs:
        args += ["--epochs", f"{float(epochs):g}"]
    if strategy:
        args += ["--strategy", strategy]
    return args + list(extra)


class TrainingProcess(QObject):
    event = Signal(dict)  # one JSON-lines event of the training process
    ended = Signal(int, str)  # (exit code, -1 when it crashed or could not start; stderr text)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.proc: QProcess | None = None
        self.reader = ""  # who starts the run (``CTSEG_READER`` of the process)
        self._stdout = b""
        self.stderr = ""
        self.events: list[dict] = []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.state() != QProcess.NotRunning

    def start(self, arguments: list[str]) -> None:
        if self.running:
            raise RuntimeError("a training process is already running")
        self._stdout, self.stderr, self.events = b"", "", []
        if self.proc is not None:
            self.proc.deleteLater()
        proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        if self.reader:
            env.insert("CTSEG_READER", self.reader)  # recorded with the run in the workspace's audit log
        proc.setProcessEnvironment(env)
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        self.proc = proc
        proc.start(sys.executable, arguments)

    def cancel(self) -> None:
        """Ask the process to stop (SIGTERM; it saves its state and reports ``cancelled``)."""
        if self.running:
            self.proc.terminate()

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.waitForFinished(5000)

    def _read_stdout(self) -> None:
        self._stdout += bytes(self.proc.readAllStandardOutput())
        *lines, self._stdout = self._stdout.split(b"\n")
        for line in lines:
            self._parse(line)

    def _parse(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        if not text.startswith("{"):
            return
        try:
            event = json.loads(text)
        except ValueError:
            return
        if isinstance(event, dict) and "event" in event:
            self.events.append(event)
            self.event.emit(event)

    def _read_stderr(self) -> None:
        self.stderr = (self.stderr + bytes(self.proc.readAllStandardError()).decode("utf-8", "replace"))[-STDERR_KEEP:]

    def _on_finished(self, code: int, status) -> None:
        self._read_stdout()
        self._read_stderr()
        if self._stdout:
            self._parse(self._stdout)
            self._stdout = b""
        self.ended.emit(code if status == QProcess.NormalExit else -1, self.stderr)

    def _on_error(self, error) -> None:
        if error == QProcess.FailedToStart:
            self.stderr += f"the training process could not start ({self.proc.errorString()})"
            self.ended.emit(-1, self.stderr)
