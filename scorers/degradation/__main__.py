"""`python -m scorers.degradation train [...]`: train the degradation network (see train.py)."""
from __future__ import annotations

import sys

USAGE = "usage: python -m scorers.degradation train [--help]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "train":
        print(USAGE, file=sys.stderr)
        return 2
    from scorers.degradation import train

    return train.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
