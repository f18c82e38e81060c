"""The training process seen from the GUI: ``python -m ctseg_core train ...`` run by a ``QProcess``.

A crash or out-of-memory there never takes the GUI down; its stdout JSON lines (the typed events of
``ctseg_core.training.events``) arrive as ``event`` signals on the GUI thread, as event objects; a line of
another protocol version ends up in ``protocol_errors`` (and the log), never half read. ``cancel()`` sends
SIGTERM: the process saves its state, prints a ``cancelled`` event and exits 0. ``pause()`` / ``resume()``
(SIGUSR1 / SIGUSR2) make it give the device up between two steps and take it back (the device queue uses
them). On a CPU the process runs at a lower priority (nice 10) with one core fewer than the machine has
(unless ``OMP_NUM_THREADS`` is set), so the GUI stays responsive.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from ctseg_core.training import events as ev

STDERR_KEEP = 20000  # characters of stderr kept for the error message


def train_arguments(workspace: str | Path, steps: int | None = None, epochs: float | None = None,
                    strategy: str | None = None, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Arguments of ``python`` for one fine-tune of ``workspace`` (None: the command's default)."""
    args = ["-m", "ctseg_core", "train", "--workspace", str(workspace)]
    if steps:
        args += ["--steps", str(int(steps))]
    elif epochs:
        args += ["--epochs", f"{float(epochs):g}"]
    if strategy:
        args += ["--strategy", strategy]
    return args + list(extra)


class TrainingProcess(QObject):
    event = Signal(object)  # one event of the training process (ctseg_core.training.events)
    ended = Signal(int, str)  # (exit code, -1 when it crashed or could not start; stderr text)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.proc: QProcess | None = None
        self.reader = ""  # who starts the run (``CTSEG_READER`` of the process)
        self._stdout = b""
        self.stderr = ""
        self.events: list[ev.TrainingEvent] = []
        self.protocol_errors: list[str] = []
        self._pause_pending = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.state() != QProcess.NotRunning

    def start(self, arguments: list[str]) -> None:
        if self.running:
            raise RuntimeError("a training process is already running")
        self._stdout, self.stderr, self.events, self.protocol_errors = b"", "", [], []
        self._pause_pending = False
        if self.proc is not None:
            self.proc.deleteLater()
        proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        if self.reader:
            env.insert("CTSEG_READER", self.reader)  # recorded with the run in the workspace's audit log
        if not env.contains("OMP_NUM_THREADS"):
            env.insert("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))
        proc.setProcessEnvironment(env)
        proc.readyReadStandardOutput.connect(self._read_stdout)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        self.proc = proc
        proc.started.connect(self._lower_priority)
        proc.start(sys.executable, arguments)

    def _lower_priority(self) -> None:
        """nice 10 for the process's first thread (the threads torch starts later inherit it)."""
        if hasattr(os, "setpriority") and self.proc is not None and self.proc.processId() > 0:
            try:
                os.setpriority(os.PRIO_PROCESS, int(self.proc.processId()), 10)
            except OSError:
                pass

    def _signal(self, sig) -> None:
        if self.running and self.proc.processId() > 0:
            try:
                os.kill(int(self.proc.processId()), sig)
            except OSError:
                pass

    def pause(self) -> None:
        """Ask the run to give the device up after its current step or validation case (it reports
        ``paused``). Before its first event the process may not handle the signal yet: it is sent then."""
        if self.events:
            self._signal(signal.SIGUSR1)
        else:
            self._pause_pending = True

    def resume(self) -> None:
        self._pause_pending = False
        self._signal(signal.SIGUSR2)

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
            event = ev.from_json(json.loads(text))
        except ev.ProtocolError as exc:
            self.protocol_errors.append(str(exc))
            return
        except ValueError:
            return
        self.events.append(event)
        if self._pause_pending:
            self._pause_pending = False
            self._signal(signal.SIGUSR1)
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
