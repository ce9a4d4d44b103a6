"""Plots of MD runs (placeholder, filled below)."""


def add_arguments(parser):
    parser.add_argument("runs", nargs="+")


def run(args):
    return 0
