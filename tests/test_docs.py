"""The README and the pages under docs/ link to files and sections that exist, and CI runs the
README's test command.

The README is the front page; the run log, the book profile, the findings and the benchmarks
live in docs/*.md and link back and forth by section. A heading renamed or a section moved
breaks such a link silently on GitHub, so every relative link is checked here: its file must
exist and its #anchor must be one of that file's headings (GitHub's slug: lower case, spaces
to hyphens, punctuation but hyphens and underscores dropped).
"""

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# (the reports kept under docs/measurements/ are a run's outputs, as it wrote them: their links
# point at plots that were not kept)
PAGES = ["README.md", "docs/measurements/README.md",
         *sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings, leaving out lines inside code fences."""
    anchors, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.*)", line)):
            anchors.add(slug(m.group(1)))
    return anchors


def relative_links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_slug_matches_githubs_rule():
    assert slug("Chapters 1–5 in the book profile") == "chapters-15-in-the-book-profile"
    assert slug("Set-up: two commands") == "set-up-two-commands"
    assert slug("How chapter 6's epochs were chosen") == "how-chapter-6s-epochs-were-chosen"


def test_every_page_has_links_to_check():
    # the check below must not pass because it found nothing
    assert len(PAGES) >= 5
    assert len(relative_links(REPO_ROOT / "README.md")) > 20


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    source = REPO_ROOT / page
    broken = []
    for target in relative_links(source):
        file_part, _, anchor = target.partition("#")
        dest = (source.parent / file_part).resolve() if file_part else source
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(REPO_ROOT)}")
        elif anchor and dest.suffix == ".md" and anchor not in headings(dest):
            broken.append(f"{target}: no heading with that anchor in {dest.relative_to(REPO_ROOT)}")
    assert not broken, f"{page} has broken links:\n" + "\n".join(broken)


def test_ci_runs_exactly_the_readmes_test_command():
    """.ci/run's last line is command 2 of the README's set-up, character for character."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("# 2. install and run the test suite", 1)[1].split("```", 1)[0]
    command = block.splitlines()[1].strip()
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert command.startswith("python3 -m venv .venv") and ci[-1] == command, (command, ci[-1])


CODE_REFERENCE = re.compile(r"`((?:pipeline|tests)/[\w/]+\.py)(?:::([\w.]+))?`")


@pytest.mark.parametrize("guide, at_least", [("docs/reading-the-code.md", 40), ("docs/extending.md", 25)])
def test_the_guides_name_code_and_tests_that_exist(guide, at_least):
    """docs/reading-the-code.md points from the book's equations to ``file::Name.method``,
    docs/extending.md to where a new piece of the engine goes."""
    import importlib

    page = (REPO_ROOT / guide).read_text(encoding="utf-8")
    references = CODE_REFERENCE.findall(page)
    assert len(references) > at_least
    for path, name in references:
        assert (REPO_ROOT / path).is_file(), path
        if not name:
            continue
        if path.startswith("tests/"):
            assert re.search(rf"^def {name}\(", (REPO_ROOT / path).read_text(encoding="utf-8"), re.M), (path, name)
            continue
        obj = importlib.import_module(path[:-3].replace("/", "."))
        for part in name.split("."):
            assert hasattr(obj, part), (path, name)
            obj = getattr(obj, part)
