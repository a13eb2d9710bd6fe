"""Writes src/engine/gpu/matmul{,_f16,_q8,_q4,_q8dot}.wgsl: a register-blocked matmul unrolled by hand, rows x
cols vec4 outputs per invocation, one entry point per block shape in BLOCKS, for f32 weights, f16
weights and weights kept as a quantized pack stores them (8-bit or 4-bit integers, one scale per block of
a row along n), decoded in registers, or (q8dot) multiplied as integers by activations quantized to
8 bits (`dot4I8Packed`); and matmul_tiled{,_f16,_q8,_q4,_q8dot}.wgsl, the same products tiled
in workgroup memory for real GPUs (TILED), and matmul_tiled_f16h.wgsl, f16 weights multiplied in
half precision where the device has `shader-f16` (TILED_HALF). WGSL has no macros, and
SwiftShader (a CPU WebGPU) runs the unrolled form with named accumulators and `a.x / a.y / ...`
faster than loops over arrays, so the kernel is written out; change BLOCKS here and rerun
`python3 tools/gen_matmul_wgsl.py`.

The block shapes were chosen by timing candidates on SwiftShader on the ViT's and a short
prompt's shapes (docs/benchmarks-history.md, runs H to K): few rows leave a 16-row block mostly
empty, hence the second, small entry point."""

import re
from pathlib import Path

# Entry point: (rows, vec4 columns). `main` for most shapes, `small` for at most 8 rows
# (`Gpu::matmul` in src/engine/gpu/device.rs picks).
BLOCKS = {"main": (16, 6), "small": (8, 2)}

def bindings(w: str, scales: str | None, a: str = "vec4f") -> str:
    """The kernels' parameters and buffers: `w` an array of `w`, integer weights with `block`
    (columns per scale) in the parameters and their `scales` at binding 5."""
    params = "m: u32, n: u32, k: u32, flags: u32" + (", block: u32, pad0: u32, pad1: u32, pad2: u32" if scales else "")
    lines = [
        f"struct Params {{ {params} }}",
        "",
        "@group(0) @binding(0) var<uniform> p: Params;",
        f"@group(0) @binding(1) var<storage, read> a: array<{a}>;",
        f"@group(0) @binding(2) var<storage, read> w: array<{w}>;",
        "@group(0) @binding(3) var<storage, read> bias: array<vec4f>;",
        "@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;",
    ]
    if scales:
        lines.append(f"@group(0) @binding(5) var<storage, read> scales: array<{scales}>;")
    return "\n".join(lines) + "\n"


WEIGHTS = {
    "f32": "// w: f32 [k, n].\n" + bindings("vec4f", None),
    "f16": """\
// w: f16 [k, n] as an f16 pack stores it, two to a word (the first in the low half), decoded to
// f32 with unpack2x16float (core WGSL: no shader-f16 needed) and multiplied in f32.
""" + bindings("vec2u", None) + """
fn halves(h: vec2u) -> vec4f {
    return vec4f(unpack2x16float(h.x), unpack2x16float(h.y));
}
""",
    "q8": """\
// w: 8-bit integers [k, n], four to a word (column 4j + i in byte i of word j of a row), and one
// f32 scale per block of `block` columns of a row (`scales` [k, n / block]): w = int * scale,
// the product a pack's decoder makes, so the weights are exactly the f32 ones it would give.
""" + bindings("u32", "f32") + """
// Four signed bytes to floats (shifts, not unpack4xI8: every WGSL implementation has them).
fn ints(x: u32) -> vec4f {
    return vec4f((vec4i(bitcast<i32>(x)) << vec4u(24u, 16u, 8u, 0u)) >> vec4u(24u));
}
""",
    "q8dot": """\
// a: activations quantized to 8 bits per row (quantize_rows.wgsl: each row times the weights'
// per-k scales, then round(x * 127 / max |x|)), four k to a word [m, k / 4], and the rows'
// scales (`a_scale` [m], binding 5). w: the 8-bit integers of a q8 pack's [k, n] matrix, four k
// of one column to a word, a vec4 of words per 4 columns [k / 4, n / 4]. The products are
// integers (`dot4I8Packed`, exact in i32), scaled by the row's scale in the epilogue.
""" + bindings("vec4u", None, "u32") + """\
@group(0) @binding(5) var<storage, read> a_scale: array<f32>;

// The 4 columns of word vector `w` against the 4 k of `x`.
fn dots(x: u32, w: vec4u) -> vec4i {
    return vec4i(dot4I8Packed(x, w.x), dot4I8Packed(x, w.y), dot4I8Packed(x, w.z), dot4I8Packed(x, w.w));
}
""",
    "q4": """\
// w: 4-bit integers [k, n] offset by 8, eight to a word (column 8j + i in nibble i, low first,
// of word j of a row), and one bf16 scale per block of `block` columns of a row, two to a word
// (`scales` [k, n / block], the first in the low half): w = int * scale, the product a pack's
// decoder makes, so the weights are exactly the f32 ones it would give.
""" + bindings("u32", "u32") + """
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


def store(cols: int, ints: bool = False) -> str:
    acc, scaled = ("vec4i", "vec4f(c[v]) * a_scale[row]") if ints else ("vec4f", "c[v]")
    return f"""\
fn store_{cols}(row: u32, col: u32, c: array<{acc}, {cols}>) {{
    if row >= p.m {{ return; }}
    let n4 = p.n / 4u;
    for (var v = 0u; v < {cols}u; v++) {{
        if col + v >= n4 {{ return; }}
        let at = row * n4 + col + v;
        var value = activate({scaled} + bias[col + v], p.flags & 15u);
        if (p.flags & RESIDUAL) != 0u {{ value += out[at]; }}
        out[at] = value;
    }}
}}

"""

ONE_SCALE = """\
// `main` for matrices whose every block of scales spans whole invocations' columns (each of a
// q8 pack's matrices but the text tower's fused q | k | v): one scale read per step along k.
"""

SIGNATURE = """\
// One invocation per block, numbered with the column blocks fastest, so that every lane has work
// however narrow the output (the decoder's 64 columns are 3 blocks) and lanes side by side
// mostly share their rows. Grids over 65535 workgroups wrap into y.
"""


def kernel(entry: str, ROWS: int, COLS: int, weights: str, one_scale: bool = False) -> str:
    """`one_scale` (8-bit weights): every column of an invocation's block in one block of the
    scales, so each step along k reads one scale, not one per vec4 of columns."""
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
    if weights in ("q8", "q4"):
        lines.append("    let nb = (p.n + p.block - 1u) / p.block;")
    if one_scale:
        lines.append("    let s = (col * 4u) / p.block;")
    elif weights in ("q8", "q4"):
        # Each vec4 of columns lies in one block: its scale's column, and for 4 bits its word
        # and nibble offset, fixed for the whole loop.
        lines += [f"    let s{j} = (j{j} * 4u) / p.block;" for j in cols]
    if weights == "q4":
        lines.append("    let n8 = p.n / 8u;")
        lines += [f"    let q{j} = j{j} / 2u; let h{j} = (j{j} % 2u) * 16u;" for j in cols]
    acc = "vec4i" if weights == "q8dot" else "vec4f"
    lines += ["    " + " ".join(f"var c{r}_{j} = {acc}();" for j in cols) for r in rows]
    lines.append("    for (var kk = 0u; kk < k4; kk++) {")
    lines += [f"        let a{r} = a[r{r} + kk];" for r in rows]
    if weights == "q8dot":
        # One word of A (4 k) per row and one vec4 of words (4 columns x 4 k) per column block.
        lines.append("        " + " ".join(f"let w{j} = w[kk * n4 + j{j}];" for j in cols))
        lines += ["        " + " ".join(f"c{r}_{j} += dots(a{r}, w{j});" for j in cols) for r in rows]
    for q, comp in enumerate("xyzw" if weights != "q8dot" else ""):
        lines.append("        {")
        if weights in ("f32", "f16"):
            load = "w[at + j{j}]" if weights == "f32" else "halves(w[at + j{j}])"
            lines.append(f"            let at = (kk * 4u + {q}u) * n4;")
            lines.append("            " + " ".join(f"let w{j} = {load.format(j=j)};" for j in cols))
        elif one_scale:
            lines.append(f"            let at = (kk * 4u + {q}u) * n4;")
            lines.append(f"            let scale = scales[(kk * 4u + {q}u) * nb + s];")
            lines.append("            " + " ".join(f"let w{j} = ints(w[at + j{j}]) * scale;" for j in cols))
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


# The tiled variant, for real GPUs: a 16 x 16 workgroup computes a 64 x 64 tile of the output,
# each invocation 4 rows x 4 columns (16 accumulators: a real GPU's registers hold them, where
# the register-blocked kernel's 384 per invocation would spill). Per step of 16 along k the
# workgroup stages A [64 x 16] and w [16 x 64] in workgroup memory, one vec4 of each per
# invocation; integer weights are decoded once there, for all 64 rows.
TILED_HEADER = """\
// Written by tools/gen_matmul_wgsl.py; edit that, not this file.
//
// out[m, n] = act(a[m, k] · w[k, n] + bias[n]) (+ out[m, n] with RESIDUAL), all row-major, as
// matmul.wgsl computes it, tiled for real GPUs: a 16 x 16 workgroup per 64 x 64 block of the
// output, 4 x 4 outputs per invocation, A and w staged in workgroup memory 16 deep along k.
// Needs k % 4 == 0 and n % 4 == 0 (4-bit weights: n % 8 == 0; blocks a multiple of 4); rows
// and columns past the end read the last one again, and their results are not stored.
//
"""

W_VEC = {
    "f32": """\
fn w_vec(k: u32, j: u32) -> vec4f {
    return w[k * (p.n / 4u) + j];
}
""",
    "f16": """\
fn w_vec(k: u32, j: u32) -> vec4f {
    return halves(w[k * (p.n / 4u) + j]);
}
""",
    "q8": """\
fn w_vec(k: u32, j: u32) -> vec4f {
    let nb = (p.n + p.block - 1u) / p.block;
    return ints(w[k * (p.n / 4u) + j]) * scales[k * nb + (j * 4u) / p.block];
}
""",
    "q8dot": "",
    "q4": """\
fn w_vec(k: u32, j: u32) -> vec4f {
    let nb = (p.n + p.block - 1u) / p.block;
    return ints(w[k * (p.n / 8u) + j / 2u], (j % 2u) * 16u) * scale(k * nb + (j * 4u) / p.block);
}
""",
}

# The same for q8dot: per step of 16 along k, A [64 x 4 words] and w [4 word rows x 16 vec4 of
# words], one entry each for the first 256 / 64 invocations.
TILED_DOT = """\
var<workgroup> a_tile: array<array<u32, 4>, 64>;
var<workgroup> w_tile: array<array<vec4u, 16>, 4>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let last = p.m - 1u;
    let t = l.y * 16u + l.x;
    let a_row = min(wg.y * 64u + t / 4u, last) * k4;
    let w_col = min(wg.x * 16u + t % 16u, n4 - 1u);
    var c0 = vec4i(); var c1 = vec4i(); var c2 = vec4i(); var c3 = vec4i();
    for (var k0 = 0u; k0 < k4; k0 += 4u) {
        let ak = k0 + t % 4u;
        a_tile[t / 4u][t % 4u] = select(0u, a[a_row + min(ak, k4 - 1u)], ak < k4);
        if t < 64u {
            let wk = k0 + t / 16u;
            w_tile[t / 16u][t % 16u] = select(vec4u(), w[min(wk, k4 - 1u) * n4 + w_col], wk < k4);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 4u; kk++) {
            let wv = w_tile[kk][l.x];
            c0 += dots(a_tile[l.y * 4u][kk], wv);
            c1 += dots(a_tile[l.y * 4u + 1u][kk], wv);
            c2 += dots(a_tile[l.y * 4u + 2u][kk], wv);
            c3 += dots(a_tile[l.y * 4u + 3u][kk], wv);
        }
        workgroupBarrier();
    }
    let row = wg.y * 64u + l.y * 4u;
    let col = wg.x * 16u + l.x;
    store_1(row, col, array(c0));
    store_1(row + 1u, col, array(c1));
    store_1(row + 2u, col, array(c2));
    store_1(row + 3u, col, array(c3));
}
"""

TILED = """\
var<workgroup> a_tile: array<array<{T}, 4>, 64>;
var<workgroup> w_tile: array<array<{T}, 16>, 16>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let last = p.m - 1u;
    let t = l.y * 16u + l.x;
    // What this invocation stages: row t / 4 of the A tile (its vec4 t % 4 along k), and row
    // t / 16 of the w tile (its vec4 column t % 16).
    let a_row = min(wg.y * 64u + t / 4u, last) * k4;
    let w_col = min(wg.x * 16u + t % 16u, n4 - 1u);
    var c0 = vec4f(); var c1 = vec4f(); var c2 = vec4f(); var c3 = vec4f();
    for (var k0 = 0u; k0 < p.k; k0 += 16u) {
        let ak = k0 / 4u + t % 4u;
        a_tile[t / 4u][t % 4u] = {T}(select(vec4f(), a[a_row + min(ak, k4 - 1u)], ak < k4));
        let wk = k0 + t / 16u;
        w_tile[t / 16u][t % 16u] = select({T}(), w_vec(min(wk, p.k - 1u), w_col), wk < p.k);
        workgroupBarrier();
        for (var kk = 0u; kk < 4u; kk++) {
            let w0 = w_tile[kk * 4u][l.x];
            let w1 = w_tile[kk * 4u + 1u][l.x];
            let w2 = w_tile[kk * 4u + 2u][l.x];
            let w3 = w_tile[kk * 4u + 3u][l.x];
            let a0 = a_tile[l.y * 4u][kk];
            let a1 = a_tile[l.y * 4u + 1u][kk];
            let a2 = a_tile[l.y * 4u + 2u][kk];
            let a3 = a_tile[l.y * 4u + 3u][kk];
            c0 += {SUM}(a0.x * w0 + a0.y * w1 + a0.z * w2 + a0.w * w3);
            c1 += {SUM}(a1.x * w0 + a1.y * w1 + a1.z * w2 + a1.w * w3);
            c2 += {SUM}(a2.x * w0 + a2.y * w1 + a2.z * w2 + a2.w * w3);
            c3 += {SUM}(a3.x * w0 + a3.y * w1 + a3.z * w2 + a3.w * w3);
        }
        workgroupBarrier();
    }
    let row = wg.y * 64u + l.y * 4u;
    let col = wg.x * 16u + l.x;
    store_1(row, col, array(c0));
    store_1(row + 1u, col, array(c1));
    store_1(row + 2u, col, array(c2));
    store_1(row + 3u, col, array(c3));
}
"""

# f16 weights in half precision: the tiles hold f16 (half the workgroup memory), each step's four
# products are summed in f16 (packed half arithmetic on GPUs that have it) and added to f32
# accumulators, so rounding does not grow with k. Activations are rounded to f16 on staging.
TILED_HALF = """\
// w: f16 [k, n] as an f16 pack stores it (`shader-f16`), multiplied by the activations rounded to
// f16; every four products summed in f16, the sums accumulated in f32.
""" + bindings("vec4h", None) + """
fn w_vec(k: u32, j: u32) -> vec4h {
    return w[k * (p.n / 4u) + j];
}
"""


def tiled(half: bool) -> str:
    if half:
        return TILED.replace("{T}", "vec4h").replace("{SUM}", "vec4f")
    plain = re.sub(r"\{SUM\}\((.*)\);", r"\1;", TILED)
    return plain.replace("{T}(select(vec4f()", "select(vec4f()").replace("k4));", "k4);").replace("{T}", "vec4f")


if __name__ == "__main__":
    folder = Path(__file__).resolve().parent.parent / "src/engine/gpu"
    for weights, bindings in WEIGHTS.items():
        ints = weights == "q8dot"
        stores = "".join(store(c, ints) for c in sorted({c for _, c in BLOCKS.values()}))
        out = folder / ("matmul.wgsl" if weights == "f32" else f"matmul_{weights}.wgsl")
        kernels = "\n".join(kernel(e, r, c, weights) for e, (r, c) in BLOCKS.items())
        if weights == "q8":
            # Where a layout allows it (`Projection::one_scale` in src/engine/gpu/device.rs): fewer
            # reads, and on SwiftShader every read from a buffer is a gather.
            kernels += "\n" + ONE_SCALE + kernel("main_one_scale", *BLOCKS["main"], weights, one_scale=True)
        out.write_text(HEADER.replace("{WEIGHTS}", bindings) + stores + SIGNATURE + kernels)
        print(f"wrote {out} ({', '.join(f'{e}: {r} rows x {c} vec4' for e, (r, c) in BLOCKS.items())})")
        out_tiled = folder / ("matmul_tiled.wgsl" if weights == "f32" else f"matmul_tiled_{weights}.wgsl")
        body = HEADER[HEADER.index("const RESIDUAL"):]
        w_vec = W_VEC[weights] + "\n" if W_VEC[weights] else ""
        out_tiled.write_text(TILED_HEADER + bindings + "\n" + w_vec + body + store(1, ints) + (TILED_DOT if ints else tiled(False)))
        print(f"wrote {out_tiled} (64 x 64 tiles, 4 x 4 per invocation)")
    half = folder / "matmul_tiled_f16h.wgsl"
    half.write_text("enable f16;\n\n" + TILED_HEADER + TILED_HALF + "\n" + body + store(1) + tiled(True))
    print(f"wrote {half} (64 x 64 tiles in f16)")
