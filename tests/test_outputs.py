"""Output paths (issue 12, part 2): what `-o` may be, and what happens to it on failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from transalign.cli import main
from transalign.outputs import OutputError, open_output

ROOT = Path(__file__).resolve().parents[1]
CLI = "import sys; from transalign.cli import main; sys.exit(main(sys.argv[1:]))"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_symlink_is_kept_and_its_target_replaced(tmp_path):
    target = write(tmp_path / "real.txt", "old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with open_output(link) as out:
        out.write("new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.txt", "real.txt"]


def test_existing_permissions_are_kept(tmp_path):
    path = write(tmp_path / "secret.txt", "old\n")
    path.chmod(0o600)
    with open_output(path) as out:
        out.write("new\n")
    assert path.read_text() == "new\n" and (path.stat().st_mode & 0o777) == 0o600


def test_hard_link_stays_shared(tmp_path):
    path = write(tmp_path / "a.txt", "old\n")
    other = tmp_path / "b.txt"
    os.link(path, other)
    with open_output(path) as out:
        out.write("new\n")
    assert other.read_text() == "new\n" and path.stat().st_ino == other.stat().st_ino


def test_fifo_is_streamed_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    with open_output(fifo) as out:
        out.write("0-0\n")
    reader.join(10)
    assert got == ["0-0\n"] and fifo.exists() and not fifo.is_file()


def test_dash_is_stdout(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_output("-") as out:
        out.write("0-1\n")
    assert capsys.readouterr().out == "0-1\n" and not (tmp_path / "-").exists()


def test_directory_and_input_are_refused(tmp_path):
    src = write(tmp_path / "src.txt", "a\n")
    with pytest.raises(OutputError, match="is a directory"):
        with open_output(tmp_path):
            pass
    with pytest.raises(OutputError, match="is also an input"):
        with open_output(src, inputs=[src]):
            pass
    assert src.read_text() == "a\n"


def test_temporary_of_a_killed_writer_is_cleaned_next_time(tmp_path):
    path = tmp_path / "out.txt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.txt.{int(dead.stdout)}.abcd.tmp"
    stale.write_text("half")
    with open_output(path) as out:
        out.write("done\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def _align_args(bundle, src, tgt, *extra):
    return ["align", str(bundle), "--src", str(src), "--tgt", str(tgt), "--src-lang", "eng_Latn",
            "--tgt-lang", "ces_Latn", "--provider", "cpu", *extra]


def test_cli_refuses_output_equal_to_input_before_work(tmp_path, tiny_bundle, capsys):
    src = write(tmp_path / "src.txt", "a b\n")
    tgt = write(tmp_path / "tgt.txt", "x y\n")
    assert main(_align_args(tiny_bundle, src, tgt, "-o", str(src))) == 2
    assert "is also an input" in capsys.readouterr().err and src.read_text() == "a b\n"
    assert main(_align_args(tiny_bundle, src, tgt, "-o", str(tmp_path))) == 2
    assert "is a directory" in capsys.readouterr().err
    # refused before the bundle is even opened
    assert main(_align_args(tmp_path / "no-bundle", src, tgt, "-o", str(tmp_path))) == 2
    assert "is a directory" in capsys.readouterr().err


def test_cli_reads_stdin_and_writes_dash(tmp_path, tiny_bundle):
    tgt = write(tmp_path / "tgt.txt", "x y\nz\n")
    ref = tmp_path / "ref.txt"
    src = write(tmp_path / "src.txt", "a b\nc\n")
    assert main(_align_args(tiny_bundle, src, tgt, "-o", str(ref))) == 0
    run = subprocess.run([sys.executable, "-c", CLI, *_align_args(tiny_bundle, "-", tgt, "-o", "-")],
                         input="a b\nc\n", capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ref.read_text() and not (tmp_path / "-").exists()


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-c", CLI, *args], **kwargs)


def test_sigterm_removes_the_temporary_file(tmp_path, tiny_bundle):
    fifo = tmp_path / "src.fifo"
    os.mkfifo(fifo)
    tgt = write(tmp_path / "tgt.txt", "x\n" * 10)
    out = write(tmp_path / "out.txt", "previous\n")
    proc = _cli(*_align_args(tiny_bundle, fifo, tgt, "-o", str(out)), stderr=subprocess.PIPE, text=True)
    with open(fifo, "w") as feed:  # blocks until the aligner opens its input
        feed.write("a\n")
        feed.flush()
        deadline = time.monotonic() + 60
        while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir()), "the writer never opened its output"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated" in err and "Traceback" not in err
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "src.fifo", "tgt.txt"]


def test_closed_stdout_ends_quietly(tmp_path, tiny_bundle):
    lines = "".join(f"w{k} x y z\n" for k in range(6000))
    src, tgt = write(tmp_path / "src.txt", lines), write(tmp_path / "tgt.txt", lines)
    proc = _cli(*_align_args(tiny_bundle, src, tgt), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert first and proc.returncode in (0, 141) and "Traceback" not in err and "Broken pipe" not in err


def test_project_refuses_an_input_as_output(tmp_path, data_dir, capsys):
    sample = data_dir / "reference/bam-sample"
    labeled = tmp_path / "en.txt"
    labeled.write_bytes((sample / "test-translate-bam-en-preds.txt").read_bytes())
    before = labeled.read_bytes()
    code = main(["project", str(labeled), str(sample / "test-bam.txt"), str(sample / "bam-en-alignments.txt"),
                 "-o", str(labeled)])
    assert code == 2 and "is also an input" in capsys.readouterr().err and labeled.read_bytes() == before
