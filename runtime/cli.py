"""Command line: ``etn inspect``, ``etn generate``, ``etn fit``, ``etn eval``, ``etn export``, ``etn example``.

Every command turns the package's own errors (bad spec, bad model file, bad configuration) into
one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _spec(arg: str):
    from . import catalogue
    from .generator import Spec

    p = Path(arg)
    if p.suffix == ".toml" or p.exists():
        return Spec.load(p)
    if arg in catalogue.names():
        return catalogue.load(arg)
    raise FileNotFoundError(f"{arg} is neither a spec file nor a catalogue spec ({', '.join(catalogue.names())})")


def cmd_inspect(args) -> int:
    from .generator import schedule
    from .report import dot, table

    sched = schedule(_spec(args.spec))
    if args.json:
        print(sched.to_json())
    elif args.dot:
        print(dot(sched), end="")
    else:
        print(table(sched))
    return 0


def cmd_generate(args) -> int:
    from .codegen import write_library
    from .generator import schedule

    spec = _spec(args.spec)
    for path in write_library(schedule(spec), args.output, args.dtype):
        print(path)
    print(f"build with: make -C {args.output}   run: {args.output}/etn_example MODEL.etn CONFIG.txt")
    return 0


def cmd_example(args) -> int:
    from .example import run

    run(steps=args.steps, sweeps=args.sweeps, out=args.output)
    return 0


def cmd_fit(args) -> int:
    from .train import fit_config

    fit_config(args.config, progress=not args.quiet)
    return 0


def cmd_eval(args) -> int:
    from .train import evaluate_files

    evaluate_files(args.model, args.files, backend=args.backend, json_path=args.json, plot=args.plot)
    return 0


def cmd_export(args) -> int:
    from .lammps import PLUGIN, export

    out = export(args.model, args.output, build_plugin=not args.no_build)
    model = Path(args.model).name
    if not args.no_build:
        print(f"built {out / PLUGIN}")
    else:
        print(f"wrote {out}; build with: make -C {out}")
    from .potential import Potential

    species = " ".join(Potential.load(out / model).spec.species)
    print(f"in LAMMPS:\n  plugin load {out / PLUGIN}\n  pair_style etn\n  pair_coeff * * {out / model} {species}"
          f"\n(one element per atom type; example input: {out / 'in.etn'})")
    return 0


def main(argv=None) -> int:
    from . import __version__

    ap = argparse.ArgumentParser(prog="etn", description="Equivariant tensor network interatomic potentials.")
    ap.add_argument("--version", action="version", version=f"etn {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print the contraction schedule of a spec")
    p.add_argument("spec", help="spec TOML file, or a catalogue name (tiny, binary, compressed, default, deep)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="the full schedule as JSON")
    g.add_argument("--dot", action="store_true", help="a Graphviz picture of the network (pipe to `dot -Tpng`)")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("generate", help="write a standalone C library (kernels, header, example main.c, Makefile)")
    p.add_argument("spec", help="spec TOML file or catalogue name")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--dtype", choices=["float64", "float32"], default=None, help="precision (default: the spec's)")
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("example", help="the bundled example: fit a small model to bundled MoNbTaW data, report errors, run MD")
    p.add_argument("--steps", type=int, default=50, help="MD steps (default 50)")
    p.add_argument("--sweeps", type=int, default=4, help="fit sweeps (default 4)")
    p.add_argument("-o", "--output", default="etn-example", help="folder for the model and plot (default etn-example)")
    p.set_defaults(func=cmd_example)
    p = sub.add_parser("fit", help="fit a model as a TOML configuration describes (data, spec, weights, sweeps)")
    p.add_argument("config", help="fit configuration (TOML); see the README")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_fit)
    p = sub.add_parser("eval", help="errors of a saved model on labelled files (extxyz or MLIP .cfg)")
    p.add_argument("model", help="model file (.etn)")
    p.add_argument("files", nargs="+", help="data files or glob patterns")
    p.add_argument("--backend", default="c", help="c (default), c-float32, numpy")
    p.add_argument("--json", help="also write the errors as JSON to this file")
    p.add_argument("--plot", help="also write parity plots to this PNG file")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("export", help="export a model to a simulator: `etn export lammps MODEL -o DIR`")
    p.add_argument("target", choices=["lammps"], help="lammps: a LAMMPS plugin pair style (etnplugin.so)")
    p.add_argument("model", help="model file (.etn)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--no-build", action="store_true", help="only write the sources and Makefile")
    p.set_defaults(func=cmd_export)
    args = ap.parse_args(argv)
    from .build import CompilerError
    from .dataset import DataError
    from .fit import FitError
    from .generator import SpecError
    from .lammps import LammpsError
    from .modelfile import ModelFileError
    from .neighbors import ConfigurationError

    try:
        return args.func(args)
    except (SpecError, ModelFileError, ConfigurationError, DataError, FitError, CompilerError, LammpsError, FileNotFoundError,
            KeyError) as e:
        print(f"etn: error: {e}", file=sys.stderr)
        return 2
