"""The children of a PIMD run are stopped whatever the signals: a Ctrl-C that arrives while a
child is being started waits until the child is registered (else nobody would stop it), and a
second Ctrl-C during the cleanup does not cut it short.

Each case runs in a Python process of its own, which signals itself: a stray SIGINT must not
reach pytest.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

from process_checks import processes_in

ROOT = Path(__file__).resolve().parents[2]

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]

#: a child that ignores SIGTERM (only SIGKILL, after the grace period, stops it), and says
#: when it does
STUBBORN = [
    sys.executable,
    "-c",
    "import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path('ready').touch(); time.sleep(120)",
]


def run_script(body: str, folder: Path) -> subprocess.CompletedProcess:
    script = "import os, signal, subprocess, sys, threading, time\n"
    script += "from pathlib import Path\n"
    script += "from euclidnn.md.processes import Processes\n"
    script += "from euclidnn.md.serve import Address\n"
    script += textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )


def test_a_ctrl_c_while_a_child_starts_is_held_until_it_is_registered(tmp_path):
    """Popen returns a running child; a SIGINT just then (the test sends it from inside
    Popen) is delivered once the child is in the list that the cleanup stops."""
    result = run_script(
        f"""
        original = subprocess.Popen
        def popen_then_ctrl_c(*args, **kwargs):
            child = original(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs here, between fork and registration
            return child
        subprocess.Popen = popen_then_ctrl_c
        try:
            with Processes(Address(name="test_held_{tmp_path.name}")) as processes:
                processes.start({SLEEPER!r}, Path("."), "child.log")
                print("not interrupted")
        except KeyboardInterrupt:
            child = processes.children[0].process
            print("interrupted; child registered and reaped:", child.returncode is not None)
        """,
        tmp_path,
    )
    assert "interrupted; child registered and reaped: True" in result.stdout, result
    assert processes_in(tmp_path) == []


def test_a_second_ctrl_c_during_the_cleanup_does_not_orphan_a_child(tmp_path):
    """The first Ctrl-C starts the cleanup, which waits 5 s for a child that ignores SIGTERM
    before it kills it; two more Ctrl-C in that time are ignored, so the child is still
    killed and reaped, and the run ends with one KeyboardInterrupt."""
    result = run_script(
        f"""
        def ctrl_c_three_times():  # the first interrupts, the others hit the cleanup
            for pause in (0.2, 0.5, 1.0):
                time.sleep(pause)
                print("Ctrl-C", flush=True)
                os.kill(os.getpid(), signal.SIGINT)
        try:
            with Processes(Address(name="test_twice_{tmp_path.name}")) as processes:
                child = processes.start({STUBBORN!r}, Path("."), "child.log")
                while not Path("ready").exists():
                    time.sleep(0.02)
                threading.Thread(target=ctrl_c_three_times, daemon=True).start()
                time.sleep(60)
        except KeyboardInterrupt:
            print("one interrupt; child reaped with", child.poll())
        print("after the cleanup, Ctrl-C works again:", signal.getsignal(signal.SIGINT)
              is signal.default_int_handler)
        """,
        tmp_path,
    )
    assert result.stdout.count("Ctrl-C\n") == 3, result
    assert f"one interrupt; child reaped with {-9}" in result.stdout, result
    assert "Ctrl-C works again: True" in result.stdout, result
    assert "Traceback" not in result.stderr, result.stderr
    assert processes_in(tmp_path) == []


def test_close_is_idempotent(tmp_path):
    result = run_script(
        f"""
        with Processes(Address(name="test_idem_{tmp_path.name}")) as processes:
            child = processes.start({SLEEPER!r}, Path("."), "child.log")
        processes.close()
        processes.close()
        print("stopped:", child.poll())
        """,
        tmp_path,
    )
    assert "stopped: -15" in result.stdout, result
    assert processes_in(tmp_path) == []
