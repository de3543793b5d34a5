"""How io words what it found: plurals, a summary before long runs of similar problems, layout hints."""

from __future__ import annotations

import os
import re

# More than this many problems of one kind are summarised in one line naming the first few.
LIST_LIMIT = 5

_PATHLIKE = re.compile(r"\S*[/\\]\S*|\S+\.[A-Za-z]\w{0,4}\b")
_NUMBER = re.compile(r"\d+")
_MISSING_IN_DICOMDIR = re.compile(r"^(?P<index>.*?): DICOMDIR lists (?:a file that is missing \(.*?(?P<file>[^\s/\\]+)\)|"
                                  r"(?P<name>\S+) \(.*\) but the file is missing)$")


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 slice', '2 slices', '0 slices' ('many' for irregular plurals: plural(2, 'series', 'series'))."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _shape(line: str) -> str:
    """A line with its paths and numbers blanked: lines of one shape say the same thing of different files."""
    return _NUMBER.sub("#", _PATHLIKE.sub("<path>", line))


def condense(lines: list[str], limit: int = LIST_LIMIT) -> list[str]:
    """The lines, with every run of more than `limit` similar ones replaced by one summary line.

    Similar: the same words once file names, paths and numbers are blanked. The summary
    takes the place of the first of them and names the first `limit`; order is kept otherwise.
    """
    groups: dict[str, list[str]] = {}
    for line in lines:
        groups.setdefault(_shape(line), []).append(line)
    out: list[str] = []
    for line in lines:
        group = groups[_shape(line)]
        if len(group) <= limit:
            out.append(line)
        elif line is group[0]:
            out.append(_summary(group, limit))
    return out


def _summary(group: list[str], limit: int) -> str:
    n, more = len(group), len(group) - limit
    missing = [_MISSING_IN_DICOMDIR.match(line) for line in group]
    if all(missing):
        names = ", ".join(m.group("file") or m.group("name") for m in missing[:limit])
        return f"{missing[0].group('index')}: {n} files listed in DICOMDIR are missing: {names} (and {more} more)"
    return f"{n} similar problems, the first {limit}: " + "; ".join(group[:limit]) + f" (and {more} more)"


def condense_skipped(skipped: list[tuple[str, str]], limit: int = LIST_LIMIT) -> list[str]:
    """Skipped files as lines 'path: reason'; more than `limit` with one reason become one line."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in skipped:
        by_reason.setdefault(reason, []).append(path)
    out = []
    for reason, paths in by_reason.items():
        if len(paths) <= limit:
            out.extend(f"{p}: {reason}" for p in paths)
        else:
            folders = {os.path.dirname(p) for p in paths}
            where = f" in {folders.pop()}" if len(folders) == 1 else ""
            names = [os.path.basename(p) for p in paths] if where else paths
            out.append(f"{len(paths)} files{where}: {reason}: {', '.join(names[:limit])} (and {len(paths) - limit} more)")
    return out
