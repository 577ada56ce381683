"""The README and docs/ pages stay true to the command line and to each other.

Every `transalign SUB ...` line of a fenced shell block in README.md and docs/*.md is parsed by
the real parser (`transalign.cli.build_parser`), so a flag that does not exist, a value outside
its choices or a missing required option fails here, naming the file and line. The README stays a
guide (at most 300 lines), and every relative link of README.md and docs/*.md points to a file
(and heading) that exists.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from transalign.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 300
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
FENCE = re.compile(r"^(\s*)(```|~~~)\s*([\w+-]*)")
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ";;", ">", ">>", "<", "<<", "(", ")", "2>", "&>"}
# a markdown link or image: [text](target) with target not an absolute URL
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def shell_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, logical line) of every fenced shell block: backslash continuations
    joined, blank lines and whole-line comments dropped."""
    out: list[tuple[int, str]] = []
    fence, pending, start = None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(2) if match.group(3).lower() in SHELL_LANGUAGES else ("skip", match.group(2))
            continue
        closing = fence if isinstance(fence, str) else fence[1]
        if line.strip().startswith(closing):
            fence, pending = None, ""
            continue
        if isinstance(fence, tuple):
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical, pending = (pending + line).strip(), ""
        if logical and not logical.startswith("#"):
            out.append((start, logical))
    return out


def transalign_argv(line: str) -> list[str] | None:
    """The arguments after `transalign` when the line runs it, up to the first shell operator
    (pipe, redirection, `&&`, `;`), comments dropped; None for any other command."""
    if line.startswith("$ "):
        line = line[2:]
    if line.split()[0] != "transalign":
        return None
    line = re.sub(r"(?<=\s)\d+(?=[<>])", "", line)  # `2> err`: the descriptor belongs to the redirection
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    if not tokens or tokens[0] != "transalign":
        return None
    argv = []
    for token in tokens[1:]:
        if token in SHELL_OPERATORS:
            break
        argv.append(token)
    return argv


def command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for page in pages():
        for number, line in shell_lines(page.read_text(encoding="utf-8")):
            try:
                argv = transalign_argv(line)
            except ValueError as exc:  # shlex: an unclosed quotation
                argv = ["<not a shell line>", str(exc)]
            if argv is not None:
                found.append((f"{page.relative_to(ROOT)}:{number}: {line}", argv))
    return found


COMMAND_LINES = command_lines()


def parse_error(argv: list[str]) -> str | None:
    """None if the real parser accepts argv, else what it said (argparse exits on an error)."""
    import contextlib
    import io

    if "-h" in argv or "--help" in argv:
        return "a documented command line should show real options, not --help"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        return f"exit {exc.code}: {stderr.getvalue().strip()}"
    return None


def test_the_documentation_shows_commands():
    """The checks below see the commands (a broken extractor would make them pass vacuously)."""
    subcommands = {argv[0] for _, argv in COMMAND_LINES if argv}
    assert {"export", "align", "align-corpus", "serve", "eval", "tune", "bench", "finetune"} <= subcommands


@pytest.mark.parametrize("where, argv", COMMAND_LINES, ids=[where.split(": ", 1)[0] for where, _ in COMMAND_LINES])
def test_documented_command_line_parses(where, argv):
    error = parse_error(argv)
    assert error is None, f"{where}\n  the parser refuses it: {error}"


def test_the_check_catches_a_wrong_flag_and_a_missing_option():
    text = "```bash\ntransalign align B --src a --tgt b \\\n    --no-such-flag 3   # comment\n```\n"
    [(number, line)] = shell_lines(text)
    assert number == 2 and line.endswith("--no-such-flag 3   # comment")
    argv = transalign_argv(line)
    assert argv == ["align", "B", "--src", "a", "--tgt", "b", "--no-such-flag", "3"]
    assert "--no-such-flag" in parse_error(argv)
    assert parse_error(["export", "model"]) is not None          # -o is required
    assert "int4" in parse_error(["align", "B", "--src", "a", "--tgt", "b", "--precision", "int4"])  # a choice
    assert parse_error(["align", "B", "--src", "a", "--tgt", "b", "--precision", "int8"]) is None
    assert transalign_argv("transalign eval g p --json > out.json") == ["eval", "g", "p", "--json"]
    assert transalign_argv("transalign eval g p 2> err.txt") == ["eval", "g", "p"]
    assert transalign_argv("python -m transalign eval g p") is None
    assert shell_lines("```python\ntransalign align --bogus\n```\n") == []


def test_readme_is_a_guide_of_at_most_300_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # headings inside code are not headings
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, flags=re.M)}


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.relative_to(root)})")
    return broken


def test_readme_links_every_docs_page_it_names_and_they_exist():
    text = README.read_text(encoding="utf-8")
    docs_links = [t for t in LINK.findall(text) if t.startswith("docs/")]
    assert docs_links, "the README links no docs/ page"
    assert broken_links(README) == []


@pytest.mark.parametrize("page", pages()[1:], ids=lambda p: p.name)
def test_links_of_docs_pages_exist(page):
    assert broken_links(page) == []


def test_link_check_catches_a_missing_page_and_heading(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Title\n\n## Two words: `code`\n", encoding="utf-8")
    page.write_text("[a](other.md#two-words-code) [b](missing.md) [c](other.md#nope) [d](https://x.y/z)\n",
                    encoding="utf-8")
    assert broken_links(page, root=tmp_path) == ["missing.md (no such file)", "other.md#nope (no heading #nope in other.md)"]
