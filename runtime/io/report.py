"""Human-readable views of a schedule: the ``etn inspect`` table and a Graphviz picture."""

from __future__ import annotations

from ..generator.schedule import ORDERS, Schedule
from ..generator.spec import FEATURES


def _fmt(n: int) -> str:
    return f"{n:,}"


def table(sched: Schedule) -> str:
    spec = sched.spec
    f = sched.features
    out = [
        f"etn schedule  spec {spec.hash[:12]}  topology {spec.topology}  dtype {spec.dtype}",
        f"species {' '.join(spec.species)}  r_min {spec.r_min:g} Å  r_cut {spec.r_cut:g} Å  "
        f"n_radial {spec.n_radial}  l_max {spec.l_max}",
        f"features A[c, l, m]: C = {spec.n_channels} channels (+1 constant for l = 0), "
        f"{f['n_sh']} harmonics, {f['size']} numbers per atom",
        "bonds: " + "  |  ".join(f"b{b.k}: {b.irreps}" for b in sched.bonds),
        "cores: " + "  |  ".join(f"{c.k}: {_input_text(c.inputs[0])} x {_input_text(c.inputs[1])} -> b{c.k}"
                                 + (" (per species)" if c.species_specific else "") for c in sched.cores),
        "",
    ]
    hdr = f"{'core':>4} {'path (L_in,l,L_out)':>19} {'r_in x n_c x r_out':>18} {'nnz':>5} {'params':>8} " \
          f"{'order':>5} {'FLOPs f+b':>9}   alternatives"
    out += [hdr, "-" * len(hdr)]
    for core in sched.cores:
        S = spec.n_species if core.species_specific else 1
        if core.K:
            n = sum(sched.block(name).size for name in core.compress)
            note = "   folded: the C evaluation runs the paths below on g' = U g" if core.fold else ""
            out.append(f"{core.k:>4} {'compress U[l,c,K]':>19} {'K = ' + str(core.K):>18} {'':>5} {_fmt(n):>8}{note}")
        for p in core.folded or core.paths:
            n = sched.block(p.param).size  # a folded path's block is stored compressed: r_in x K x r_out
            shape = f"{p.r_in}x{p.n_c}x{p.r_out}" + (f" x{S}sp" if S > 1 else "")
            alts = "  ".join(f"{o}={_fmt(p.flops[o] + p.bwd_flops[o])}" for o in ORDERS if o != p.order)
            out.append(f"{core.k:>4} {str((p.L_in, p.l, p.L_out)):>19} {shape:>18} {p.nnz:>5} {_fmt(n):>8} "
                       f"{p.order:>5} {_fmt(p.flops[p.order] + p.bwd_flops[p.order]):>9}   {alts}")
    fw, bw = sched.flops.forward, sched.flops.backward
    out += [
        "",
        f"parameters: {_fmt(sched.n_params)} ({_fmt(spec.n_species)} reference energies e0 included)",
        f"FLOPs per atom, forward:  {_fmt(fw.per_atom)} + {_fmt(fw.per_pair)} x n_neighbours",
        f"FLOPs per atom, backward: {_fmt(bw.per_atom)} + {_fmt(bw.per_pair)} x n_neighbours",
        f"buffers per atom (numbers): features {sched.buffers.features}, bonds {sched.buffers.h_total}, "
        f"largest path temporary {sched.buffers.path_temp}",
    ]
    return "\n".join(out)


def _input_text(v) -> str:
    return "A" if v == FEATURES else "1" if v == 0 else f"b{v}"


def dot(sched: Schedule) -> str:
    """Graphviz ``digraph`` of the network: cores as boxes, bonds as labelled edges (from the core that
    forms a bond to the core that takes it), the features as leaves, the output as a circle."""
    spec = sched.spec
    out_label = "V_i" if spec.is_energy else f"output\\n{spec.output}"
    lines = ["digraph etn {", "  rankdir=LR;", '  node [fontname="Helvetica"];',
             f'  out [shape=doublecircle, label="{out_label}"];']
    if any(c.constant_input for c in sched.cores):
        lines.append("  in [shape=point];")
    feat = f"A[c,l,m]\\nC={spec.n_channels}, l<={spec.l_max}"
    for core in sched.cores:
        k = core.k
        label = f"core {k}\\n{len(core.paths)} paths" + ("\\nper species" if core.species_specific else "")
        lines.append(f'  g{k} [shape=box, style=rounded, label="{label}"];')
        for side, v in zip("xy", core.inputs):
            if v == 0:
                lines.append(f'  in -> g{k} [label="{sched.bonds[0].irreps}"];')
            elif v == FEATURES:
                a = f"a{k}{side}"
                lines.append(f'  {a} [shape=ellipse, label="{feat}"];')
                if core.K:
                    lines.append(f'  u{k} [shape=box, label="U{k}\\nK={core.K}"];')
                    lines.append(f"  {a} -> u{k}; u{k} -> g{k};")
                else:
                    lines.append(f"  {a} -> g{k};")
            else:
                lines.append(f'  g{v} -> g{k} [label="{sched.bonds[v].irreps}"];')
    lines.append(f'  g{spec.cores} -> out [label="{sched.bonds[spec.cores].irreps}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"
