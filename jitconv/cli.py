"""Command line: `jitconv demo` (also `python -m jitconv demo`)."""
from __future__ import annotations

import argparse
import sys

from jitconv.errors import JitconvError


def _cmd_demo(args):
    from jitconv.demo import run_demo
    threads = tuple(sorted({1, args.threads})) if args.threads else (1, 2)
    run_demo(input_size=args.size, repeat=args.repeat, threads=threads, seed=args.seed)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="jitconv", description="Numba-compiled CNN inference.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the built-in MobileNetV2-style model under each config",
                          description="Build a MobileNetV2-style model in memory (seeded "
                                      "weights), run it with each supported config and print "
                                      "latency, memory and error against the NumPy reference.")
    demo.add_argument("--size", type=int, default=224, help="input height and width (224)")
    demo.add_argument("--repeat", type=int, default=10, help="timed runs per config (10)")
    demo.add_argument("--threads", type=int, default=None,
                      help="largest thread count to try (default: 1 and 2)")
    demo.add_argument("--seed", type=int, default=0, help="weights and input seed (0)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except JitconvError as exc:
        print(f"jitconv: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
