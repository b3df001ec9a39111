#!/usr/bin/env python3
"""The ratio chart of a benchmark report (bench/run-all).

Reads the report's markdown: every `## ` section and, in it, every table row whose last cell
holds a ratio ("1.23x", or "0.8 s (1.23x)"), and draws one horizontal bar per row on a
logarithmic axis centred on 1.0 (native). Writes a self-contained SVG.

    bench/chart.py REPORT.md OUT.svg
"""

import html
import math
import re
import sys

RATIO = re.compile(r"([0-9]+(?:\.[0-9]+)?)x")
CELL = re.compile(r"(?<!\\)\|")
LOW, HIGH = 0.25, 8.0  # the axis: a quarter of native's time to eight times
ROW, LABEL_W, BAR_W, PAD = 18, 470, 420, 10


def rows(report):
    """(section, label, ratio) for every ratio row of the report."""
    section = None
    for line in report.splitlines():
        if line.startswith("## "):
            section = line[3:].strip()
            continue
        if not line.startswith("|") or section is None:
            continue
        # (A cell may hold an escaped pipe: `echo $i \| tr`.)
        cells = [c.strip().replace("\\|", "|") for c in CELL.split(line.strip().strip("|"))]
        if len(cells) < 2 or set(cells[0]) <= set("-: "):
            continue
        found = RATIO.findall(cells[-1])
        if not found:
            continue
        label = " / ".join(c for c in cells[:-3] if c) or cells[0]
        yield section, label.replace("**", "").replace("`", ""), float(found[-1])


def condensed(entries, most=20, worst=5):
    """Long sections (a benchmark suite) as their summary rows and their worst rows."""
    out = []
    for section in dict.fromkeys(e[0] for e in entries):
        part = [e for e in entries if e[0] == section]
        if len(part) > most:
            summary = [e for e in part if e[1].startswith("geometric mean")]
            rest = sorted((e for e in part if e not in summary), key=lambda e: -e[2])
            name = f"{section} (the {worst} slowest of {len(part) - len(summary)})"
            part = [(name, l, r) for _, l, r in summary + rest[:worst]]
        out.extend(part)
    return out


def x_of(ratio):
    r = min(max(ratio, LOW), HIGH)
    return LABEL_W + BAR_W * (math.log(r) - math.log(LOW)) / (math.log(HIGH) - math.log(LOW))


def colour(ratio):
    if ratio <= 1.05:
        return "#2e8b57"
    if ratio <= 1.5:
        return "#d4a017"
    return "#c0392b"


def svg(entries, title):
    out, y = [], 40
    last = None
    for section, label, ratio in entries:
        if section != last:
            y += 8
            out.append(f'<text x="{PAD}" y="{y + 12}" font-weight="bold">{html.escape(section)}</text>')
            y += ROW
            last = section
        text = label if len(label) <= 70 else label[:67] + "..."
        out.append(f'<text x="{PAD + 10}" y="{y + 12}">{html.escape(text)}</text>')
        x0, x1 = x_of(1.0), x_of(ratio)
        left, width = min(x0, x1), max(abs(x1 - x0), 1)
        out.append(
            f'<rect x="{left:.1f}" y="{y + 2}" width="{width:.1f}" height="{ROW - 5}" '
            f'fill="{colour(ratio)}"/>'
        )
        out.append(f'<text x="{max(x0, x1) + 4:.1f}" y="{y + 12}">{ratio:.2f}x</text>')
        y += ROW
    height = y + 40
    width = LABEL_W + BAR_W + 70
    axis = []
    for tick in (0.25, 0.5, 1, 2, 4, 8):
        x = x_of(tick)
        axis.append(
            f'<line x1="{x:.1f}" y1="30" x2="{x:.1f}" y2="{y}" stroke="#999" '
            f'stroke-dasharray="{"none" if tick == 1 else "2,3"}"/>'
        )
        axis.append(f'<text x="{x:.1f}" y="{y + 16}" text-anchor="middle">{tick:g}x</text>')
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'font-family="sans-serif" font-size="12">',
            f'<rect width="{width}" height="{height}" fill="white"/>',
            f'<text x="{PAD}" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
            *axis,
            *out,
            f'<text x="{PAD}" y="{y + 32}" fill="#555">time under zhuque / native time '
            "(log scale; left of 1x: faster than native)</text>",
            "</svg>",
        ]
    )


def main():
    report_path, out_path = sys.argv[1], sys.argv[2]
    report = open(report_path, encoding="utf-8").read()
    entries = condensed(list(rows(report)))
    if not entries:
        sys.exit(f"chart.py: no ratio rows in {report_path}")
    first = report.splitlines()[0].lstrip("# ").strip()
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(svg(entries, first) + "\n")


if __name__ == "__main__":
    main()
