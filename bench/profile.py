"""Read a py-spy `--format raw` profile (collapsed stacks) and print where time goes.

    python -m bench.profile bench/results/profile-…-sqlite-list.txt [--top 25]

Prints the functions with the most samples on top of the stack (self) and in the stack
(inclusive), and the share of samples in a few places worth knowing about: idle event
loop, the thread pool, SQL execution, JSON, validation, token checks.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

MARKERS = {
    "event loop idle (epoll)": ("select (selectors.py", "run_once", "poll"),
    "waiting for a thread-pool slot / lock": ("acquire", "wait (threading.py"),
    "SQL execution (driver)": ("execute (sqlite3", "do_execute", "_exec_single_context"),
    "ORM flush": ("flush (sqlalchemy/orm/session.py",),
    "pydantic validation": ("validate_python", "model_validate"),
    "JSON encoding": ("jsonable_encoder", "serialize_response", "dumps"),
    "token decoding": ("decode_access_token",),
    "password hashing": ("argon2",),
}


def short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for anchor in ("site-packages/", "/work/main/", "lib/python3"):
        if anchor in path:
            path = path.split(anchor, 1)[1]
            break
    return f"{match.group('function')} ({path}:{match.group('line') or '?'})"


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def summarize(path: Path, top: int = 25) -> str:
    stacks = load(path)
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        own[short(frames[-1])] += count
        for frame in {short(frame) for frame in frames}:
            inclusive[frame] += count
    lines = [f"{path.name}: {total} samples"]
    lines.append("\nself (top of stack):")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("\ninclusive (anywhere in the stack), application and library frames:")
    shown = 0
    for name, n in inclusive.most_common():
        if shown >= top:
            break
        if name.startswith(("<module>", "run (", "_bootstrap", "_run (", "run_forever")):
            continue
        lines.append(f"  {100 * n / total:5.1f}%  {name}")
        shown += 1
    lines.append("\nshares:")
    for label, needles in MARKERS.items():
        n = sum(
            count
            for frames, count in stacks
            if any(needle in frame for frame in frames for needle in needles)
        )
        lines.append(f"  {100 * n / total:5.1f}%  {label}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for path in args.profiles:
        print(summarize(path, args.top))
        print()


if __name__ == "__main__":
    main()
