"""Render a results.json into the default report and screenshot it as GitHub would show it (docs/report.png).

The Markdown goes through cmarkgfm (the C library GitHub's Markdown engine is built on: GFM tables,
autolinks, tag filter; raw HTML kept as GitHub's sanitizer keeps <details>, <summary>, <sub>, <br>), is
styled with the `github-markdown-css` npm package, the ```mermaid block is drawn with the `mermaid` npm
package (GitHub renders Mermaid in comments), and headless Chromium takes the picture. Nothing here is
needed by the tests or by CI: it makes the docs' image.

Reproduce (every tool comes from PyPI, Debian or npm; nothing goes into the repository):

    .venv/bin/pip install cmarkgfm
    apt-get install -y chromium fonts-noto-color-emoji fonts-dejavu
    mkdir -p /tmp/shot && (cd /tmp/shot && npm install github-markdown-css@5 mermaid@11)
    .venv/bin/python scripts/screenshot_report.py gate-out/results.json --examples gate-out/examples.jsonl \\
        --assets /tmp/shot/node_modules --png docs/report.png --markdown docs/report-example.md

``--open N`` unfolds the first N "biggest changes" so the picture shows what is inside one.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGE = """<!doctype html>
<html><head><meta charset="utf-8">
<style>{css}</style>
<style>
  body {{ background: #f6f8fa; margin: 0; padding: 24px; font-family: -apple-system, "Segoe UI", "Noto Sans",
         "DejaVu Sans", Helvetica, Arial, sans-serif, "Noto Color Emoji"; }}
  .comment {{ width: {width}px; margin: 0 auto; border: 1px solid #d0d7de; border-radius: 6px; background: #fff; }}
  .comment-header {{ background: #f6f8fa; border-bottom: 1px solid #d0d7de; border-radius: 6px 6px 0 0;
                     padding: 8px 16px; font-size: 14px; color: #57606a; }}
  .comment-header b {{ color: #1f2328; }}
  .markdown-body {{ padding: 16px; font-size: 14px; }}
  .markdown-body table {{ font-size: 13px; }}
</style>
<script>{mermaid_js}</script>
</head><body>
<div class="comment"><div class="comment-header"><b>github-actions</b> <span>bot</span> commented</div>
<article class="markdown-body">{body}</article></div>
<script>
  const done = () => {{ document.body.setAttribute("data-height", String(document.documentElement.scrollHeight)); }};
  if (window.mermaid) {{
    mermaid.initialize({{ startOnLoad: false, theme: "default" }});
    mermaid.run({{ querySelector: ".mermaid" }}).then(done, (e) => {{ document.body.setAttribute("data-error", String(e)); done(); }});
  }} else {{ done(); }}
</script>
</body></html>
"""


def to_html(markdown_text: str) -> str:
    """GitHub-flavoured HTML of the report, as cmarkgfm renders it."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    return cmarkgfm.github_flavored_markdown_to_html(markdown_text, options=Options.CMARK_OPT_UNSAFE)


def page(body: str, assets: Path, width: int, open_changes: int) -> str:
    # GitHub draws a ```mermaid block (rendered as <pre lang="mermaid">) as a chart.
    body = re.sub(r'<pre lang="mermaid"><code>(.*?)</code></pre>',
                  lambda m: f'<div class="mermaid">{m.group(1)}</div>', body, flags=re.S)
    if open_changes:
        head, sep, tail = body.partition("<h3>Biggest changes</h3>")
        for _ in range(open_changes if sep else 0):
            tail = tail.replace("<details><summary>", "<details open><summary>", 1)
        body = head + sep + tail
    css = (assets / "github-markdown-css" / "github-markdown-light.css").read_text(encoding="utf-8")
    mermaid_js = (assets / "mermaid" / "dist" / "mermaid.min.js").read_text(encoding="utf-8")
    return PAGE.format(css=css, mermaid_js=mermaid_js.replace("</script", "<\\/script"), width=width, body=body)


def chromium(binary: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--allow-file-access-from-files",
           "--force-device-scale-factor=1", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def screenshot(html_file: Path, png: Path, binary: str, width: int) -> None:
    window = width + 48
    dom = chromium(binary, f"--window-size={window},2000", "--dump-dom", html_file.as_uri())
    height = re.search(r'data-height="(\d+)"', dom.stdout)
    error = re.search(r'data-error="([^"]*)"', dom.stdout)
    if error:
        raise SystemExit(f"mermaid failed: {html.unescape(error.group(1))}")
    if not height:
        raise SystemExit(f"the page did not finish rendering:\n{dom.stderr[-2000:]}")
    png.parent.mkdir(parents=True, exist_ok=True)
    shot = chromium(binary, f"--window-size={window},{int(height.group(1)) + 8}", f"--screenshot={png}",
                    html_file.as_uri())
    if not png.is_file():
        raise SystemExit(f"chromium wrote no screenshot:\n{shot.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> None:
    from gate.report import load_examples, render

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--examples", type=Path, help="examples.jsonl (default: next to the results)")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "report.png")
    ap.add_argument("--markdown", type=Path, help="also write the rendered Markdown here")
    ap.add_argument("--html", type=Path, help="also keep the HTML page here")
    ap.add_argument("--assets", type=Path, default=Path("/tmp/shot/node_modules"),
                    help="node_modules holding github-markdown-css and mermaid")
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    ap.add_argument("--width", type=int, default=1012, help="the comment's width in pixels")
    ap.add_argument("--open", type=int, default=1, dest="open_changes", help="biggest changes to unfold")
    args = ap.parse_args(argv)

    results = json.loads(args.results.read_text(encoding="utf-8"))
    examples = load_examples(args.examples or args.results.parent / "examples.jsonl")
    report = render(results, examples=examples)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(report, encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        html_file = Path(tmp) / "report.html"
        html_file.write_text(page(to_html(report), args.assets, args.width, args.open_changes), encoding="utf-8")
        if args.html:
            shutil.copyfile(html_file, args.html)
        screenshot(html_file, args.png, args.chromium, args.width)
    print(f"{args.png} ({len(report):,} characters of Markdown)")


if __name__ == "__main__":
    main()
