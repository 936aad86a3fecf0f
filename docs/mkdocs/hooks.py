"""mkdocs hooks for the documentation site (docs/mkdocs/mkdocs.yml).

* Pages from outside docs/: the project README (home page),
  examples/README.md and bench/README.md, at the same relative places.
* Links: a relative link in any page is resolved against the page's place in
  the repository; when it names a file that is part of the site, it is
  rewritten to that file's place in the site. So ``docs/python-api.md`` in the
  README and ``../bench/README.md`` in docs/benchmarks.md work both on a Git
  host and in the site.
* Heading anchors are made the way Git hosts make them (``Level 1 — per
  packet`` becomes ``level-1--per-packet``), so that the tables of contents
  written in the pages work in both places.
"""

from __future__ import annotations

import os
import posixpath
import re
import unicodedata

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

DOCS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(DOCS)

# Files outside docs/ that become pages: repository path -> place in the site.
EXTRA_PAGES = {
    "README.md": "README.md",
    "examples/README.md": "examples/README.md",
    "bench/README.md": "bench/README.md",
}

# [text](target) and ![alt](target), target without spaces.
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def github_slug(value: str, separator: str) -> str:
    """Heading id as Git hosts make it: lower case, punctuation dropped, spaces to '-'."""
    value = unicodedata.normalize("NFKC", value).strip().lower()
    value = re.sub(r"[^\w\- ]", "", value)
    return value.replace(" ", separator)


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    config.mdx_configs.setdefault("toc", {})["slugify"] = github_slug
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for repo_path, site_path in EXTRA_PAGES.items():
        files.append(
            File.generated(config, site_path, abs_src_path=os.path.join(ROOT, repo_path))
        )
    return files


def _repo_path(page: Page) -> str:
    """Where the page's source lives, relative to the repository root."""
    abs_src = page.file.abs_src_path or ""
    return os.path.relpath(abs_src, ROOT).replace(os.sep, "/")


def _site_path(repo_path: str) -> str | None:
    """Where a repository file is in the site, or None if it is not part of it."""
    for repo, site in EXTRA_PAGES.items():
        if repo == repo_path:
            return site
    if repo_path.startswith("docs/") and not repo_path.startswith("docs/mkdocs/"):
        return repo_path[len("docs/"):]
    return None


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    here = posixpath.dirname(_repo_path(page))
    page_dir = posixpath.dirname(page.file.src_uri)

    def fix(match: re.Match[str]) -> str:
        target = match.group(2)
        if re.match(r"^[a-z][a-z0-9+.-]*:|^/|^#", target):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        site = _site_path(posixpath.normpath(posixpath.join(here, path)))
        if site is None or files.get_file_from_path(site) is None:
            return match.group(0)
        new = posixpath.relpath(site, page_dir or ".") + hash_ + anchor
        return match.group(1) + new + match.group(3)

    return LINK.sub(fix, markdown)
