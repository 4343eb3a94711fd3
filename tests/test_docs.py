"""The documentation: the site under docs/ builds with MkDocs --strict (every page in the navigation, no
broken link or anchor), a broken link makes that build fail, and every link of the README resolves."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).with_name("mkdocs")


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(project / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=project,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_site_builds_strictly_with_every_page(tmp_path):
    result = build(ROOT, tmp_path / "site")
    assert result.returncode == 0, result.stderr
    pages = sorted(p.relative_to(ROOT / "docs").with_suffix(".html") for p in (ROOT / "docs").rglob("*.md"))
    assert pages and all((tmp_path / "site" / page).is_file() for page in pages), pages
    reference = (tmp_path / "site" / "reference.html").read_text()
    assert "loadBalancer.healthCheck" in reference and "sshPrivateKey" in reference


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "docs", project / "docs")
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    page = project / "docs" / "lab.md"
    text = page.read_text()
    page.write_text(text.replace("(engine.md)", "(engines.md)", 1))
    result = build(project, tmp_path / "site")
    assert result.returncode != 0
    assert "engines.md" in result.stderr
    page.write_text(text.replace("(engine.md)", "(engine.md#no-such-section)", 1))
    result = build(project, tmp_path / "site2")
    assert result.returncode != 0
    assert "no-such-section" in result.stderr


def test_every_relative_link_of_the_readme_resolves():
    text = (ROOT / "README.md").read_text()
    links = [link for link in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in link]
    assert links
    for link in links:
        path = link.split("#", 1)[0]
        assert (ROOT / path).exists(), f"README links to {link}, which does not exist"
