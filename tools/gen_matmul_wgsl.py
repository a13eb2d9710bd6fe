"""Writes src/engine/gpu/matmul{,_q8,_q4}.wgsl: a register-blocked matmul unrolled by hand, rows x
cols vec4 outputs per invocation, one entry point per block shape in BLOCKS, for f32 weights and
for weights kept as a quantized pack stores them (8-bit or 4-bit integers, one scale per block of
a row along n), decoded in registers. WGSL has no macros, and
SwiftShader (a CPU WebGPU) runs the unrolled form with named accumulators and `a.x / a.y / ...`
faster than loops over arrays, so the kernel is written out; change BLOCKS here and rerun
`python3 tools/gen_matmul_wgsl.py`.

The block shapes were chosen by timing candidates on SwiftShader on the ViT's and a short
prompt's shapes (docs/benchmarks-history.md, runs H to K): few rows leave a 16-row block mostly
empty, hence the second, small entry point."""

from pathlib import Path

# Entry point: (rows, vec4 columns). `main` for most shapes, `small` for at most 8 rows
# (`Gpu::matmul` in src/engine/gpu/device.rs picks).
BLOCKS = {"main": (16, 6), "small": (8, 2)}

WEIGHTS = {
    "f32": """\
// w: f32 [k, n].
struct Params { m: u32, n: u32, k: u32, flags: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4f>;
@group(0) @binding(2) var<storage, read> w: array<vec4f>;
@group(0) @binding(3) var<storage, read> bias: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;
""",
    "q8": """\
// w: 8-bit integers [k, n], four to a word (column 4j + i in byte i of word j of a row), and one
// f32 scale per block of `block` columns of a row (`scales` [k, n / block]): w = int * scale,
// the product a pack's decoder makes, so the weights are exactly the f32 ones it would give.
struct Params { m: u32, n: u32, k: u32, flags: u32, block: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4f>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;
@group(0) @binding(5) var<storage, read> scales: array<f32>;

// Four signed bytes to floats (shifts, not unpack4xI8: every WGSL implementation has them).
fn ints(x: u32) -> vec4f {
    return vec4f((vec4i(bitcast<i32>(x)) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
}
""",
    "q4": """\
// w: 4-bit integers [k, n] offset by 8, eight to a word (column 8j + i in nibble i, low first,
// of word j of a row), and one bf16 scale per block of `block` columns of a row, two to a word
// (`scales` [k, n / block], the first in the low half): w = int * scale, the product a pack's
// decoder makes, so the weights are exactly the f32 ones it would give.
struct Params { m: u32, n: u32, k: u32, flags: u32, block: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4f>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;
@group(0) @binding(5) var<storage, read> scales: array<u32>;

// The four nibbles of `x` from bit `shift` up, as floats.
fn ints(x: u32, shift: u32) -> vec4f {
    let n = (vec4u(x) >> (vec4u(0u, 4u, 8u, 12u) + shift)) & vec4u(15u);
    return vec4f(vec4i(n) - vec4i(8));
}

fn scale(i: u32) -> f32 {
    let word = scales[i / 2u];
    return bitcast<f32>(select(word << 16u, word & 0xffff0000u, (i & 1u) == 1u));
}
""",
}

HEADER = f"""\
// Written by tools/gen_matmul_wgsl.py (block shapes chosen there); edit that, not this file.
//
// out[m, n] = act(a[m, k] · w[k, n] + bias[n]) (+ out[m, n] with RESIDUAL), all row-major.
// Each invocation computes a block of outputs in registers: {", ".join(f"`{e}` {r} x {4 * c}" for e, (r, c) in BLOCKS.items())}.
// No workgroup memory, no barriers, and the inner loop is unrolled with named vector
// components: on a CPU implementation of WebGPU (SwiftShader) a shared-memory tiled kernel is
// an order of magnitude slower (barriers are coroutine switches there), and `a[j]` with a loop
// index j slower than `a.x` (a dynamic vector index becomes selects).
// Needs k % 4 == 0 and n % 4 == 0 (4-bit weights: n % 8 == 0; blocks a multiple of 4); rows
// and columns past the end read the last one again, and their results are not stored.
//
{{WEIGHTS}}
const RESIDUAL: u32 = 16u;

fn activate(x: vec4f, act: u32) -> vec4f {{
    switch act {{
        case 1u: {{ return x / (1.0 + exp(-1.702 * x)); }} // quick_gelu
        case 2u: {{ // gelu_tanh
            return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
        }}
        case 3u: {{ return max(x, vec4f(0.0)); }} // relu
        case 4u: {{ return x / (1.0 + exp(-x)); }} // silu
        default: {{ return x; }}
    }}
}}

"""


def store(cols: int) -> str:
    return f"""\
fn store_{cols}(row: u32, col: u32, c: array<vec4f, {cols}>) {{
    if row >= p.m {{ return; }}
    let n4 = p.n / 4u;
    for (var v = 0u; v < {cols}u; v++) {{
        if col + v >= n4 {{ return; }}
        let at = row * n4 + col + v;
        var value = activate(c[v] + bias[col + v], p.flags & 15u);
        if (p.flags & RESIDUAL) != 0u {{ value += out[at]; }}
        out[at] = value;
    }}
}}

"""

SIGNATURE = """\
// One invocation per block, numbered with the column blocks fastest, so that every lane has work
// however narrow the output (the decoder's 64 columns are 3 blocks) and lanes side by side
// mostly share their rows. Grids over 65535 workgroups wrap into y.
"""


def kernel(entry: str, ROWS: int, COLS: int, weights: str) -> str:
    rows, cols = range(ROWS), range(COLS)
    lines = [
        f"@compute @workgroup_size(32)",
        f"fn {entry}(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) groups: vec3u) {{",
        "    let n4 = p.n / 4u;",
        "    let k4 = p.k / 4u;",
        f"    let blocks = (n4 + {COLS - 1}u) / {COLS}u;",
        "    let i = g.x + g.y * groups.x * 32u;",
        f"    let col = (i % blocks) * {COLS}u;",
        f"    let m0 = (i / blocks) * {ROWS}u;",
        "    if m0 >= p.m { return; }",
        "    let last = p.m - 1u;",
    ]
    lines += [f"    let r{r} = min(m0 + {r}u, last) * k4;" for r in rows]
    lines += [f"    let j{j} = min(col + {j}u, n4 - 1u);" for j in cols]
    if weights != "f32":
        # Each vec4 of columns lies in one block: its scale's column, and for 4 bits its word
        # and nibble offset, fixed for the whole loop.
        lines.append("    let nb = (p.n + p.block - 1u) / p.block;")
        lines += [f"    let s{j} = (j{j} * 4u) / p.block;" for j in cols]
    if weights == "q4":
        lines.append("    let n8 = p.n / 8u;")
        lines += [f"    let q{j} = j{j} / 2u; let h{j} = (j{j} % 2u) * 16u;" for j in cols]
    lines += ["    " + " ".join(f"var c{r}_{j} = vec4f();" for j in cols) for r in rows]
    lines.append("    for (var kk = 0u; kk < k4; kk++) {")
    lines += [f"        let a{r} = a[r{r} + kk];" for r in rows]
    for q, comp in enumerate("xyzw"):
        lines.append("        {")
        if weights == "f32":
            lines.append(f"            let at = (kk * 4u + {q}u) * n4;")
            lines.append("            " + " ".join(f"let w{j} = w[at + j{j}];" for j in cols))
        elif weights == "q8":
            lines.append(f"            let at = (kk * 4u + {q}u) * n4;")
            lines.append(f"            let sr = (kk * 4u + {q}u) * nb;")
            lines.append("            " + " ".join(f"let w{j} = ints(w[at + j{j}]) * scales[sr + s{j}];" for j in cols))
        else:
            lines.append(f"            let at = (kk * 4u + {q}u) * n8;")
            lines.append(f"            let sr = (kk * 4u + {q}u) * nb;")
            lines.append("            " + " ".join(f"let w{j} = ints(w[at + q{j}], h{j}) * scale(sr + s{j});" for j in cols))
        lines += ["            " + " ".join(f"c{r}_{j} += a{r}.{comp} * w{j};" for j in cols) for r in rows]
        lines.append("        }")
    lines.append("    }")
    lines += [f"    store_{COLS}(m0 + {r}u, col, array({', '.join(f'c{r}_{j}' for j in cols)}));" for r in rows]
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(__file__).resolve().parent.parent / "src/engine/gpu"
    stores = "".join(store(c) for c in sorted({c for _, c in BLOCKS.values()}))
    for weights, bindings in WEIGHTS.items():
        out = folder / ("matmul.wgsl" if weights == "f32" else f"matmul_{weights}.wgsl")
        kernels = "\n".join(kernel(e, r, c, weights) for e, (r, c) in BLOCKS.items())
        out.write_text(HEADER.replace("{WEIGHTS}", bindings) + stores + SIGNATURE + kernels)
        print(f"wrote {out} ({', '.join(f'{e}: {r} rows x {c} vec4' for e, (r, c) in BLOCKS.items())})")
