"""Command line: ``etn inspect``, ``etn generate``, ``etn fit``, ``etn eval``, ``etn export``, ``etn example``,
``etn activeset``, ``etn grade``, ``etn select``.

Every command turns the package's own errors (bad spec, bad model file, bad configuration) into
one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path


def _spec(arg: str):
    from .catalogue import resolve

    return resolve(arg)


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def cmd_inspect(args) -> int:
    from .generator import schedule
    from .io.report import dot, table

    sched = schedule(_spec(args.spec))
    if args.json:
        print(sched.to_json())
    elif args.dot:
        print(dot(sched), end="")
    else:
        print(table(sched))
        if not args.no_estimate:
            from .cost import summary

            print(summary(sched))
    return 0


#: Named sizes for `etn spec`, as MTP has levels: (cores, l_max, n_radial, bond, compression K).
SIZES = {"small": (2, 2, 4, "3x0 + 2x1 + 2x2", 6), "medium": (3, 3, 6, "4x0 + 3x1 + 3x2 + 2x3", 8),
         "large": (5, 4, 8, "6x0 + 4x1 + 4x2 + 2x3 + 2x4", 12)}


def cmd_spec(args) -> int:
    from .generator import Spec

    cores, l_max, n_radial, bond, K = SIZES[args.size]
    topology = args.topology
    if topology == "tree":  # the chain's degree (at most 4) over leaves (1, A): 2d - 1 cores, no channel factors
        cores, K = 2 * min(cores, 4) - 1, 0
    r_min, note = 0.0, "no data given: r_min = 0 (pass training files to propose it)"
    if args.data:
        from .io.dataset import read, shortest

        frames = read(args.data, args.species, need=(), missing="skip")
        d, where = shortest(frames, args.r_cut)
        r_min = math.floor(20 * d) / 20 if d < math.inf else 0.0  # at or just below the data's shortest distance
        note = f"r_min from the shortest distance in the data, {d:.3f} Å in {where}" if d < math.inf else \
            "no pairs within r_cut in the data: r_min = 0"
    C = n_radial * len(args.species)
    spec = Spec.from_dict({"species": list(args.species), "r_min": r_min, "r_cut": args.r_cut, "n_radial": n_radial,
                           "l_max": l_max, "topology": topology, "cores": cores, "bonds": [bond] * (cores - 1),
                           "compression": K if K < C else 0, "repulsion": "zbl" if r_min > 0 else "none"})
    from .cost import summary
    from .generator import schedule

    print(f"# etn spec --size {args.size} --topology {topology}: {note}\n# {summary(schedule(spec))}")
    print(spec.to_toml(), end="")
    return 0


def cmd_generate(args) -> int:
    from .backends.codegen import write_library
    from .generator import schedule

    spec = _spec(args.spec)
    for path in write_library(schedule(spec), args.output, args.dtype):
        print(path)
    print(f"build with: make -C {args.output}   run: {args.output}/etn_example MODEL.etn CONFIG.txt")
    return 0


def cmd_example(args) -> int:
    from .workflows.example import run

    run(steps=args.steps, sweeps=args.sweeps, out=args.output)
    return 0


def cmd_fit(args) -> int:
    from .workflows.train import fit_config

    fit_config(args.config, progress=not args.quiet)
    return 0


def cmd_eval(args) -> int:
    from .workflows.train import evaluate_files

    evaluate_files(args.model, args.files, backend=args.backend, json_path=args.json, plot=args.plot,
                   predictions=args.predictions)
    return 0


def _frames(files, species):
    """ASE ``Atoms`` of every configuration in ``files`` (labels not needed)."""
    from .io.dataset import read

    return [f.atoms for f in read(files, species, need=(), missing="skip")]


def cmd_activeset(args) -> int:
    from .fitting import grade
    from .potential import Potential

    pot = Potential.load(args.model)
    atoms = _frames(args.files, pot.spec.species)
    aset = grade.build(pot, atoms, group=args.group, progress=not args.quiet, info={"files": args.files})
    out = args.output or grade.sidecar(args.model)
    aset.save(out)
    ranks = ", ".join(f"{pot.spec.species[b.species] if b.species >= 0 else 'all'} {b.rank}"
                      for b in aset.blocks if b.kind == "atoms")
    print(f"active set of {args.model} ({aset.group}) from {len(atoms)} configurations: atoms {ranks}; "
          f"configurations {aset.config_block.rank}; wrote {out}")
    return 0


def cmd_grade(args) -> int:
    import json

    import numpy as np

    from .fitting import grade
    from .io.dataset import read
    from .potential import Potential

    pot = Potential.load(args.model)
    aset = grade.ActiveSet.load(args.active_set or grade.sidecar(args.model), pot)
    frames = read(args.files, pot.spec.species, need=(), missing="skip")
    res = grade.Grader(pot, aset).configs([f.atoms for f in frames], progress=not args.quiet)
    rows = [{"source": f.source, "atoms": f.n_atoms, "gamma_atoms_max": float(g.max(initial=0.0)),
             "gamma_atoms": g.tolist(), "gamma_config": c} for f, (g, c) in zip(frames, res)]
    width = max([len(r["source"]) for r in rows] + [13])
    print(f"{'configuration':<{width}} {'atoms':>6} {'max atom γ':>11} {'config γ':>10}")
    for r in rows:
        flag = "  extrapolating" if r["gamma_atoms_max"] > args.threshold else ""
        print(f"{r['source']:<{width}} {r['atoms']:>6d} {r['gamma_atoms_max']:>11.3f} {r['gamma_config']:>10.3f}{flag}")
    worst = np.array([r["gamma_atoms_max"] for r in rows])
    print(f"{int((worst > args.threshold).sum())} of {len(rows)} configurations have an atom with γ > "
          f"{args.threshold:g} (γ ≤ 1: inside the training data)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"model": args.model, "group": aset.group, "configurations": rows}, fh)
    return 0


def cmd_select(args) -> int:
    from ase.io import write

    from .fitting import grade
    from .potential import Potential

    pot = Potential.load(args.model)
    aset = grade.ActiveSet.load(args.active_set or grade.sidecar(args.model), pot)
    cands = _frames(args.files, pot.spec.species)
    picked = grade.select(pot, aset, cands, args.n, threshold=args.threshold, progress=not args.quiet)
    chosen = []
    for c, g in picked:
        atoms = cands[c].copy()
        atoms.info["etn_gamma"] = g
        atoms.info["etn_candidate"] = c
        chosen.append(atoms)
    if chosen:
        write(args.output, chosen, format="extxyz")
    print(f"selected {len(chosen)} of {len(cands)} candidate configurations (γ at selection: "
          f"{', '.join(f'{g:.3g}' for _, g in picked) or 'none above the threshold'})"
          + (f"; wrote {args.output}" if chosen else ""))
    return 0


def cmd_export(args) -> int:
    from .hosts.lammps import PLUGIN, export

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
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="print the contraction schedule of a spec")
    p.add_argument("spec", help="spec TOML file, or a catalogue name (tiny, binary, compressed, default, deep)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true", help="the full schedule as JSON")
    g.add_argument("--dot", action="store_true", help="a Graphviz picture of the network (pipe to `dot -Tpng`)")
    p.add_argument("--no-estimate", action="store_true", help="skip the cost estimate (it measures this machine once)")
    p.set_defaults(func=cmd_inspect)
    p = sub.add_parser("spec", help="write a spec of a named size for a list of elements (r_min from data)")
    p.add_argument("--species", nargs="+", required=True, help="element symbols, e.g. Ti Al")
    p.add_argument("--size", choices=list(SIZES), default="medium", help="small, medium (default) or large")
    p.add_argument("--topology", choices=("tensor_train", "tree"), default="tensor_train",
                   help="tensor_train (default) or tree: the same degree as the chain's (at most 4) as a hierarchical "
                        "Tucker tree")
    p.add_argument("--r-cut", type=float, default=5.0, help="cutoff in Å (default 5.0)")
    p.add_argument("--data", nargs="*", help="training files: r_min is proposed from their shortest distance")
    p.set_defaults(func=cmd_spec)
    p = sub.add_parser("generate", help="write a standalone C library (kernels, header, example main.c, Makefile)")
    p.add_argument("spec", help="spec TOML file or catalogue name")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--dtype", choices=["float64", "float32"], default=None, help="precision (default: the spec's)")
    p.set_defaults(func=cmd_generate)
    p = sub.add_parser("example", help="the bundled example: fit a small model to bundled MoNbTaW data, report errors, run MD")
    p.add_argument("--steps", type=_positive, default=50, help="MD steps (default 50)")
    p.add_argument("--sweeps", type=_positive, default=4, help="fit sweeps (default 4)")
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
    p.add_argument("--predictions", help="also write every configuration with the model's energy, per-atom "
                                         "energies, forces and stress (etn_* keys) to this extxyz file")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("export", help="export a model to a simulator: `etn export lammps MODEL -o DIR`")
    p.add_argument("target", choices=["lammps"], help="lammps: a LAMMPS plugin pair style (etnplugin.so)")
    p.add_argument("model", help="model file (.etn)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--no-build", action="store_true", help="only write the sources and Makefile")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("activeset", help="select the active set of a model from its training data (for grades)")
    p.add_argument("model", help="model file (.etn)")
    p.add_argument("files", nargs="+", help="the training data (extxyz, .cfg; glob patterns allowed)")
    p.add_argument("-o", "--output", help="active-set file (default: MODEL with suffix .aset)")
    p.add_argument("--group", help="parameter group whose rows are used (default: the species-specific core)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_activeset)
    p = sub.add_parser("grade", help="extrapolation grades γ of configurations (γ > 1: outside the training data)")
    p.add_argument("model", help="model file (.etn); its active set MODEL.aset is read")
    p.add_argument("files", nargs="+", help="configurations (extxyz, .cfg; glob patterns allowed)")
    p.add_argument("--active-set", help="active-set file (default: MODEL with suffix .aset)")
    p.add_argument("--threshold", type=float, default=2.0, help="flag configurations above this γ (default 2)")
    p.add_argument("--json", help="also write per-atom and per-configuration grades as JSON to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_grade)
    p = sub.add_parser("select", help="pick the candidate configurations that extend the active set most")
    p.add_argument("model", help="model file (.etn); its active set MODEL.aset is read")
    p.add_argument("files", nargs="+", help="candidate configurations (extxyz, .cfg; glob patterns allowed)")
    p.add_argument("-n", type=_positive, required=True, help="at most this many configurations")
    p.add_argument("-o", "--output", required=True, help="extxyz file for the selected configurations")
    p.add_argument("--active-set", help="active-set file (default: MODEL with suffix .aset)")
    p.add_argument("--threshold", type=float, default=1.0 + 1e-6,
                   help="only atoms with γ above this extend the set (default 1 + 1e-6)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_select)
    args = ap.parse_args(argv)
    from .generator.errors import EtnError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("etn: interrupted", file=sys.stderr)
        return 130
    except (EtnError, OSError) as e:  # expected failures: bad input, missing files, tools, permissions
        if args.debug:
            raise
        from .fitting import parallel

        if parallel._world is not None and parallel._world.rank > 0:  # under mpiexec rank 0 speaks for all
            return 2
        msg = str(e) if isinstance(e, EtnError) or not getattr(e, "filename", None) else \
            f"{e.filename}: {e.strerror or e}"
        print(f"etn: error: {msg}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: one line, the traceback on request
        if args.debug:
            raise
        print(f"etn: internal error: {type(e).__name__}: {e} (run again with --debug for the traceback, and "
              f"please report it)", file=sys.stderr)
        return 3
