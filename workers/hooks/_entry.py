"""The lean hook entry point: `python -I -S <this file> <claude|cursor|codex> [notify-json]`.

`hooks install` writes this command into the agents' settings. `-I -S` skips
site-packages and the user's environment, saving ~15 ms per call, so this
file puts the directory that holds the `workers` package on sys.path itself.
It always exits 0 and prints only what the agent expects (see hook.py).
"""

import os
import sys


def _main() -> None:
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        from workers.hooks.hook import main

        main(sys.argv[1:])
    except BaseException:
        pass
    os._exit(0)  # skip interpreter teardown: nothing is left to flush


if __name__ == "__main__":
    _main()
