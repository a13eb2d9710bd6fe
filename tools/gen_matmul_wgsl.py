"""Writes src/engine/gpu/matmul.wgsl: a register-blocked matmul unrolled by hand, rows x cols vec4
outputs per invocation, one entry point per block shape in BLOCKS. WGSL has no macros, and
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

HEADER = f"""\
// Written by tools/gen_matmul_wgsl.py (block shapes chosen there); edit that, not this file.
//
// out[m, n] = act(a[m, k] · w[k, n] + bias[n]) (+ out[m, n] with RESIDUAL), all row-major.
// Each invocation computes a block of outputs in registers: {", ".join(f"`{e}` {r} x {4 * c}" for e, (r, c) in BLOCKS.items())}.
// No workgroup memory, no barriers, and the inner loop is unrolled with named vector
// components: on a CPU implementation of WebGPU (SwiftShader) a shared-memory tiled kernel is
// an order of magnitude slower (barriers are coroutine switches there), and `a[j]` with a loop
// index j slower than `a.x` (a dynamic vector index becomes selects).
// Needs k % 4 == 0 and n % 4 == 0; rows and columns past the end read the last one again, and
// their results are not stored.

struct Params {{ m: u32, n: u32, k: u32, flags: u32 }}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4f>;
@group(0) @binding(2) var<storage, read> w: array<vec4f>;
@group(0) @binding(3) var<storage, read> bias: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;

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


def kernel(entry: str, ROWS: int, COLS: int) -> str:
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
    lines += ["    " + " ".join(f"var c{r}_{j} = vec4f();" for j in cols) for r in rows]
    lines.append("    for (var kk = 0u; kk < k4; kk++) {")
    lines += [f"        let a{r} = a[r{r} + kk];" for r in rows]
    for q, comp in enumerate("xyzw"):
        lines.append("        {")
        lines.append(f"            let at = (kk * 4u + {q}u) * n4;")
        lines.append("            " + " ".join(f"let w{j} = w[at + j{j}];" for j in cols))
        lines += ["            " + " ".join(f"c{r}_{j} += a{r}.{comp} * w{j};" for j in cols) for r in rows]
        lines.append("        }")
    lines.append("    }")
    lines += [f"    store_{COLS}(m0 + {r}u, col, array({', '.join(f'c{r}_{j}' for j in cols)}));" for r in rows]
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "src/engine/gpu/matmul.wgsl"
    stores = "".join(store(c) for c in sorted({c for _, c in BLOCKS.values()}))
    kernels = "\n".join(kernel(e, r, c) for e, (r, c) in BLOCKS.items())
    out.write_text(HEADER + stores + SIGNATURE + kernels)
    print(f"wrote {out} ({', '.join(f'{e}: {r} rows x {c} vec4' for e, (r, c) in BLOCKS.items())})")
