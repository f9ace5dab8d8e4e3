"""The documentation's links lead somewhere: every relative link or image in README.md,
benchmarks/README.md and docs/*.md names a file of the repository, and every #anchor a
heading of the file it points into (GitHub's heading slugs)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([REPO / "README.md", REPO / "benchmarks" / "README.md", *(REPO / "docs").glob("*.md")])
# [text](target) and ![alt](target); a target ends at a space (a title) or the parenthesis.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(document: Path) -> set[str]:
    text = FENCE.sub("", document.read_text())
    return {github_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


def links(document: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", document.read_text()))


def test_the_slug_is_githubs():
    assert github_slug("Running them all: `config/methods-zoo.yaml`") == "running-them-all-configmethods-zooyaml"
    assert github_slug("On one machine, several GPUs") == "on-one-machine-several-gpus"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(document):
    assert document.exists(), f"{document} is gone"
    broken = []
    for target in links(document):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        into = (document.parent / path).resolve() if path else document
        if not into.exists():
            broken.append(f"{target}: no file {into.relative_to(REPO) if into.is_relative_to(REPO) else into}")
        elif anchor and into.suffix == ".md" and anchor not in anchors(into):
            broken.append(f"{target}: no heading with anchor #{anchor} in {into.name}")
    assert not broken, f"{document.name}: " + "; ".join(broken)


def test_the_documents_link_at_all():
    # A pattern that matched nothing would pass the test above for every document.
    assert "docs/images/methods-zoo/heatmaps_denoise_objects.png" in links(REPO / "README.md")
    assert "#more-methods" in links(REPO / "README.md")
