"""Plan: a schedule laid out for one kernel on one target, every offset and buffer resolved.

``plan(schedule, kernel, target, dtype, fold)`` is the step between deriving and rendering:

* ``derive`` (``etn.schedule``): what to compute, exactly (paths, CG entries, parameter blocks);
* ``plan``: where everything lives for one kernel (``evaluate`` or ``design`` rows) on one target
  (``c``, ``cuda``, or ``numpy``: the reference engine interprets a plan too): which cores run
  folded, the C arrays each core reads and writes, the offset of every irrep in every input and
  output, each path's weights in the parameters (or in the folded buffer Pf), the forward pass's cache
  of temporaries, the design rows' temporaries; and the resource check (stack per thread);
* ``render`` (``etn.backends.codegen``): templates iterate the plan and print its numbers.

A :class:`CorePlan` and a :class:`PathPlan` read like the schedule's ``Core`` and ``Path`` (their
attributes pass through) plus the resolved layout.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..generator.schedule import Core, Path, Schedule
from ..generator.spec import FEATURES

KERNELS = ("evaluate", "design")
TARGETS = ("c", "cuda", "numpy")
#: bytes of one SIMD batch of the C evaluation: atoms go through the contractions 64 bytes' worth of
#: etn_real at a time (8 in float64, 16 in float32), one per lane of a GNU C vector (atom.c.j2)
VECTOR_BYTES = 64
#: Stack a kernel thread may use for one batch of atoms (OpenMP worker stacks are often 2-8 MB).
STACK_LIMIT = 4_000_000
#: CUDA: a path whose channel loops, fully unrolled, would repeat its CG sums more than this many times
#: (r_in n_c r_out nnz statements) keeps them as loops (ETN_ROLL, `#pragma unroll 1`); the CG sums inside
#: stay unrolled with literal coefficients. nvcc -O3 otherwise unrolls them all: `deep`'s evaluation took
#: 280 s to compile, 43 s with its large paths' channel loops kept (benchmarks/results/cuda_compile.txt).
ROLL_LIMIT = 1024


@dataclass(frozen=True)
class PathPlan:
    """One path of a core (the schedule's ``Path``, attributes passed through) and where its data live."""

    path: Path
    g: int  # offset of the path's weights g[(s,) a, c, b] in the parameters P, or in Pf when folded
    gptr: str  # C expression: the path's weights (in P or Pf, plus the centre's species slice)
    h_off: int  # irrep L_in in the core's first input
    b_off: int  # irrep l in the core's second input
    out_off: int  # irrep L_out in the core's bond
    xc_off: int | None = None  # C evaluation: offset in the core's cache of forward temporaries
    xoff: int = 0  # design rows: offset of the path's X / Z in the core's temporaries
    goff: int = 0  # design rows: offset of the path's columns in the core's group
    roll: str = ""  # printed before each of the path's channel loops: "ETN_ROLL " keeps them loops (CUDA)

    def __getattr__(self, name):
        return getattr(self.path, name)


@dataclass(frozen=True)
class CorePlan:
    """One core (the schedule's ``Core``, attributes passed through) and the C arrays it works on."""

    core: Core
    paths: tuple[PathPlan, ...]
    x: str  # the C array of the first input (h{j}, A)
    y: str  # the C array of the second input (B{k}, A, h{j})
    dx: str  # the array that takes the adjoint of the first input (NULL for the constant)
    dy: str  # the array that takes the adjoint of the second input (dB{k}, dA, rho{j})
    P: str  # where its weights are: P (the parameters) or Pf (the folded blocks g' = U g)
    inputs_text: str  # for the banner: "bond 1", "A x A", "bond 1 x bond 2"
    xc_size: int = 0  # C evaluation: numbers in the forward pass's cache
    xsize: int = 0  # design rows: numbers of X / Z
    uoff: tuple[int, ...] = ()  # design rows: column offset of U_k[l] in the U group
    tx: str | None = None  # design rows: the tangent of the first input (None for the constant)
    ty: str = ""  # design rows: the tangent of the second input
    U: tuple[int, ...] = ()  # offsets of U_k[l] in the parameters, per l
    tile_K: tuple[int, ...] = ()  # per l: outputs of the compression summed in registers at once
    tile_C: tuple[int, ...] = ()  # per l: channels of the expansion summed in registers at once

    def __getattr__(self, name):
        return getattr(self.core, name)


@dataclass(frozen=True)
class Plan:
    schedule: Schedule
    kernel: str
    target: str
    dtype: str
    cores: tuple[CorePlan, ...]
    lanes: int = 0  # atoms per SIMD batch (C evaluation)
    folds: tuple = ()  # the folded blocks g' = U g: (offset F in Pf, g, U, rows, C, K, r_out, name)
    n_fold: int = 0
    grade: dict | None = None  # the fused rows of extrapolation grades (C and CUDA evaluations)
    groups: tuple = ()  # design rows: per group its core, way to the output and the cores off it
    down_first: frozenset = frozenset()
    down_second: frozenset = frozenset()
    stack: int = 0  # estimated stack per thread, bytes (C evaluation)
    e0: int = 0  # offset of the reference energies in the parameters
    tile_radial: tuple[int, ...] = ()  # per l: radial functions of one pair's feature sums kept in registers

    def core(self, k: int) -> CorePlan:
        """Core k (1-based, as ``Schedule.core``)."""
        return self.cores[k - 1]


def tile(n: int, nm: int, registers: int = 12) -> int:
    """The largest divisor d of n with d * nm <= registers: a tile of sums kept in vector registers
    (12 measured best with 8-double vectors on AVX-512; larger tiles spill)."""
    return max(d for d in range(1, n + 1) if n % d == 0 and d * nm <= registers) if nm <= registers else 1


def plan(sched: Schedule, kernel: str = "evaluate", target: str = "c", dtype: str | None = None,
         fold: bool | None = None) -> Plan:
    """Lay ``sched`` out for ``kernel`` on ``target``; raises SpecError when the C evaluation would need
    more stack per thread than ``STACK_LIMIT``. The cores with ``Core.fold`` run folded (on g' = U g) in
    the C and CUDA evaluations; ``fold`` overrides that (the design rows never fold: they solve for U
    and g)."""
    if kernel not in KERNELS or target not in TARGETS:
        raise ValueError(f"no plan for kernel {kernel!r} on {target!r}; kernels {KERNELS}, targets {TARGETS}")
    spec = sched.spec
    dtype = dtype or (spec.dtype if kernel == "evaluate" else "float64")
    folded = kernel == "evaluate" and (target in ("c", "cuda") if fold is None else fold)
    simd = kernel == "evaluate" and target == "c"
    # the C and CUDA evaluations run folded cores uncompressed on g' = U g (Core.fold)
    cores = tuple(replace(c, K=0, compress=(), paths=c.folded) if c.fold and folded else c for c in sched.cores)
    bond_off = [{t.L: t.offset for t in b.terms} for b in sched.bonds]
    feats = sched.features

    folds, fold_off, n_fold = [], {}, 0
    for c in cores:
        if sched.core(c.k).K and not c.K:
            for p in c.paths:
                rows = (spec.n_species if c.species_specific else 1) * p.r_in
                folds.append(dict(F=n_fold, g=sched.block(p.param).offset, U=sched.block(f"core{c.k}.U.l{p.l}").offset,
                                  rows=rows, C=p.n_c, K=sched.core(c.k).K, r_out=p.r_out, name=p.param))
                fold_off[p.param] = n_fold
                n_fold += rows * p.n_c * p.r_out

    lanes = VECTOR_BYTES // (4 if dtype == "float32" else 8) if simd else 0
    plans = []
    for c in cores:
        x, y = c.inputs

        def h_off(L):
            return feats["offsets"][L] if x == FEATURES else bond_off[x][L]

        def b_off(l):
            if y != FEATURES:
                return bond_off[y][l]
            return c.K * l * l if c.K else feats["offsets"][l]

        # the C evaluation's cache: X of the gA paths (not for a constant first input: its backward pass has no
        # use for it) and GH of the gh paths, kept from the forward pass for the backward pass
        xc, off = {}, 0
        for p in c.paths:
            size = {"gA": p.r_in * p.r_out * (2 * p.l + 1) if not c.constant_input else 0,
                    "gh": p.n_c * p.r_out * (2 * p.L_in + 1)}.get(p.order, 0)
            if size:
                xc[p.param] = off
                off += size
        xc_size = off
        xoffs, goffs, xo, go = [], [], 0, 0
        for p in c.paths:
            xoffs.append(xo)
            goffs.append(go)
            xo += p.r_in * p.r_out * (2 * p.l + 1)
            go += sched.block(p.param).size
        uoff, uo = [], 0
        for name in c.compress:
            uoff.append(uo)
            uo += sched.block(name).size
        paths = []
        for i, p in enumerate(c.paths):
            g = fold_off[p.param] if p.param in fold_off else sched.block(p.param).offset
            gptr = f"P + {g}" + (f" + si * {p.r_in * p.n_c * p.r_out}" if c.species_specific else "")
            rolled = target == "cuda" and p.r_in * p.n_c * p.r_out * p.nnz > ROLL_LIMIT
            paths.append(PathPlan(p, g, gptr, h_off(p.L_in), b_off(p.l), bond_off[c.k][p.L_out], xc.get(p.param),
                                  xoffs[i], goffs[i], "ETN_ROLL " if rolled else ""))
        name = lambda v: "A" if v == FEATURES else f"bond {v}"  # noqa: E731
        plans.append(CorePlan(
            c, tuple(paths),
            x="A" if x == FEATURES else f"h{x}",
            y=f"B{c.k}" if c.K else "A" if y == FEATURES else f"h{y}",
            dx="NULL" if x == 0 else "dA" if x == FEATURES else f"rho{x}",
            dy=f"dB{c.k}" if c.K else "dA" if y == FEATURES else f"rho{y}",
            P="Pf" if any(p.param in fold_off for p in c.paths) else "P",
            inputs_text=f"bond {x}" if y == FEATURES and x != FEATURES else f"{name(x)} x {name(y)}",
            xc_size=xc_size, xsize=xo, uoff=tuple(uoff),
            tx=None if x == 0 else "dA" if x == FEATURES else f"dh{x}",
            ty=(f"dB{c.k}" if c.K else "dA") if y == FEATURES else f"dh{y}",
            U=tuple(sched.block(name).offset for name in c.compress),
            tile_K=tuple(tile(c.K, 2 * l + 1) for l in range(spec.l_max + 1)) if c.K else (),
            tile_C=tuple(tile(feats["channels"][l], 2 * l + 1) for l in range(spec.l_max + 1)) if c.K else ()))
    out = Plan(sched, kernel, target, dtype, tuple(plans), lanes, tuple(folds), n_fold, e0=sched.block("e0").offset,
               tile_radial=tuple(tile(spec.n_radial, 2 * l + 1) for l in range(spec.l_max + 1)))
    if kernel == "design":
        out = replace(out, **_design_groups(sched, out))
    if kernel == "evaluate" and target in ("c", "cuda"):
        out = replace(out, grade=_grade_rows(sched, out))
    if simd:
        out = replace(out, stack=stack_bytes(sched, out))
        if out.stack > STACK_LIMIT:
            from ..generator import SpecError

            raise SpecError(f"spec {spec.hash[:12]}: the per-atom temporaries of its kernels need about "
                            f"{out.stack / 1e6:.1f} MB of stack per thread (limit {STACK_LIMIT / 1e6:g} MB); lower the "
                            f"bond ranks or l_max")
    return out


def stack_bytes(sched: Schedule, p: Plan) -> int:
    """An upper estimate of the stack the C evaluation needs per thread: features and their gradient,
    left states and right environments, the forward pass's cached temporaries, and path temporaries,
    one vector (VECTOR_BYTES) per number."""
    b = sched.buffers
    pairs_of_A = sum(c.inputs == (FEATURES, FEATURES) for c in sched.cores)  # each A x A core's second adjoint
    grade = 2 * p.grade["size"] + p.grade["n_b"] if p.grade else 0  # R, the coefficients c, and B = U^T A
    numbers = (2 * b.features + 2 * b.compressed_features + 2 * b.h_total + 2 * b.path_temp
               + pairs_of_A * b.features + sum(c.xc_size for c in p.cores) + grade)
    return numbers * VECTOR_BYTES


def _grade_rows(sched: Schedule, p: Plan) -> dict:
    """What etn_compute_graded needs to write the rows of extrapolation grades (etn.fitting.grade): dV/dg of the
    species-specific core for the centre's species, in the design group's column order: per path
    R[a, c, b] = sum CG h_in[a, M_in] B[c, m] rho[b, M_out], from the core's inputs of the forward pass and
    the right environment rho = dV/dh_k of the backward pass. With compression, the core's features
    B = U^T A are formed first (per l; the evaluation may have folded U into g and never formed them)."""
    core = sched.core(sched.spec.species_core)
    cp = p.core(core.k)  # its plan (folded or not: the same inputs and bond, the same order of paths)
    feats, K = sched.features, core.K
    ls = [dict(l=l, n_a=feats["channels"][l], a_off=feats["offsets"][l], b_off=K * l * l,
               U=sched.block(core.compress[l]).offset) for l in range(sched.spec.l_max + 1)] if K else []
    paths, off = [], 0
    for q, pp in zip(core.paths, cp.paths):
        paths.append(dict(L_in=q.L_in, l=q.l, L_out=q.L_out, r_in=q.r_in, n_c=q.n_c, r_out=q.r_out, cg=q.cg, off=off,
                          h_off=pp.h_off, f_off=K * q.l * q.l if K else pp.b_off, rho_off=pp.out_off))
        off += q.r_in * q.n_c * q.r_out
    return dict(k=core.k, K=K, ls=ls, paths=paths, size=off, n_b=K * feats["n_sh"], h=cp.x, B="Bg" if K else cp.y)


def _design_groups(sched: Schedule, p: Plan) -> dict:
    """Per design group (all but e0): its core, the way from it to the output (the right environments come
    down it; the bonds off it feed the core) and which cores the way enters by which input."""
    from .design import groups

    gs = []
    for name, g in groups(sched).items():
        if name == "e0":
            continue
        way = sched.spec.way(g.core)
        down = [(p.core(c), j, sched.core(c).inputs[0] == j) for c, j in zip(way[:0:-1], way[-2::-1])]
        gs.append(dict(id=len(gs), name=name, core=p.core(g.core), U=g.U, size=g.size, way=way, down=down,
                       off_way=[c for c in p.cores if c.k not in way]))
    return dict(groups=tuple(gs), down_first=frozenset(c.k for g in gs for c, _, first in g["down"] if first),
                down_second=frozenset(c.k for g in gs for c, _, first in g["down"] if not first))
