"""mkdocs hooks (mkdocs.yml `hooks:`), for `make docs`.

- The pictures live in the repository's images/ (`make images` writes them there), and the
  pages link them as `../images/NAME`, which is right when GitHub shows docs/*.md. The site
  gets a copy of each in its own images/, and the pages' links are pointed there.
- README.md is not part of the site, but it links into docs/: its links, and the pages'
  links as GitHub resolves them (files, and #anchors by GitHub's heading slugs), are checked
  here. A broken one is a warning, which `strict: true` turns into a failed build.
"""

import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

log = logging.getLogger("mkdocs.hooks.docs")

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _root(config):
    return Path(config.config_file_path).resolve().parent


def on_files(files, config):
    for picture in sorted((_root(config) / "images").iterdir()):
        if picture.is_file():
            files.append(File.generated(config, f"images/{picture.name}",
                                        abs_src_path=str(picture)))
    return files


def on_page_markdown(markdown, page, config, files):
    return markdown.replace("](../images/", "](images/")


def _prose(path):
    """The lines of a Markdown file outside code blocks."""
    inside = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside:
            yield line


def _github_anchors(path):
    """The #anchors GitHub gives a Markdown file's headings."""
    anchors, seen = set(), {}
    for line in _prose(path):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.replace("`", "").replace("*", "").lower())
        slug = slug.replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _check_links(path, root):
    for line in _prose(path):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(root)} links to '{target}'"
            if not linked.exists():
                log.warning(f"{where}, which is not there")
            elif anchor and linked.suffix == ".md" and anchor not in _github_anchors(linked):
                log.warning(f"{where}: {linked.relative_to(root)} has no heading "
                            f"with GitHub's anchor '#{anchor}'")


def on_pre_build(config):
    root = _root(config)
    for path in [root / "README.md", *sorted(Path(config.docs_dir).glob("*.md"))]:
        _check_links(path, root)
