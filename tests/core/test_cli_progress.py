"""Progress of the long commands: a bar with ETA on a terminal, JSON lines kept for machines."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import termios
import subprocess
import sys
from pathlib import Path

from ctseg_core.terminal import EventOutput, json_output_wanted

ROOT = Path(__file__).resolve().parents[2]
EVENTS = [{"event": "plan", "parent": "v1", "strategy": "decoder", "train_cases": ["a"], "val_cases": ["b"],
           "total_steps": 4, "device": "cpu"},
          {"event": "validating", "when": "before", "version": "v1", "case": 1, "cases": 1},
          {"event": "validate", "when": "before", "version": "v1", "dice": {"ich": 0.5}, "mean_dice": 0.5},
          {"event": "start", "step": 0, "total_steps": 4},
          {"event": "step", "step": 2, "total_steps": 4, "loss": 0.25, "lr": 1e-4, "eta_s": 3.0},
          {"event": "step", "step": 4, "total_steps": 4, "loss": 0.125, "lr": 1e-4, "eta_s": 0.0},
          {"event": "done", "version": "v2", "promoted": True, "reason": "v2 is active"}]


def test_events_are_json_lines_for_machines(capsys):
    out = EventOutput(json_lines=True)
    for e in EVENTS:
        out(e)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line) for line in lines] == EVENTS


def test_events_are_a_bar_and_sentences_for_people(capsys):
    out = EventOutput(json_lines=False)
    for e in EVENTS:
        out(e)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "fine-tuning v1 (decoder) on 1 case(s)" in text and "validation Dice before (v1): 0.500" in text
    assert "4/4" in captured.err and "loss=0.1250" in captured.err  # the bar, on stderr
    assert "new version v2: v2 is active" in text and "{" not in captured.out


def test_json_wanted_when_asked_or_when_stdout_is_not_a_terminal(capsys):
    assert json_output_wanted(True) and json_output_wanted(False)  # captured stdout is not a terminal


def _in_terminal(args, cwd):
    """Run ``python -m ctseg_core ARGS`` with a pseudo-terminal as stdout and stderr; returns its output."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # a 100 x 40 terminal
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "ctseg_core", *args], stdout=child, stderr=child, cwd=cwd,
                            env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(main)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


def test_synth_shows_a_bar_with_eta_on_a_terminal(tmp_path):
    rc, text = _in_terminal(["synth", "--n", "2", "--size", "64", "--out", str(tmp_path / "s")], tmp_path)
    assert rc == 0, text
    assert "generating" in text and "2/2" in text and "<" in text  # tqdm: elapsed<remaining
    assert "seed 0:" in text and "seed 1:" in text
