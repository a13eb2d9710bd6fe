"""Writes src/engine/gpu/scores_wide.wgsl and pv_wide.wgsl: attention's two products (scores.wgsl
and pv.wgsl) with larger register blocks per invocation, for CPU implementations of WebGPU
(SwiftShader, lavapipe), where every read from a buffer is a gather and a larger block reads each
value for more products. Real GPUs keep scores.wgsl and pv.wgsl, whose blocks fit their
registers. Unrolled by hand as the matmul kernels are (tools/gen_matmul_wgsl.py); change the
shapes here (and `ATTENTION_WIDE` in src/engine/gpu/device.rs) and rerun
`python3 tools/gen_attention_wgsl.py`.

The shapes were chosen by timing candidates on SwiftShader on the ViT's shape (485 tokens, 12
heads of 64; docs/benchmarks.md, run AB)."""

from pathlib import Path

# Queries x keys per invocation (scores); queries x vec4 of the head's values (P·V).
SCORES = (8, 16)
PV = (16, 4)

PARAMS = """\
struct Params { seq: u32, hidden: u32, causal: u32, scale: f32, cols: u32, heads: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<vec4f>;
"""


def scores(R: int, C: int) -> str:
    rows, cols, vecs = range(R), range(C), range(C // 4)
    lines = [
        "// Written by tools/gen_attention_wgsl.py; edit that, not this file.",
        "//",
        "// Attention, step 1 of 3, as scores.wgsl computes it (the same parameters and layout), each",
        f"// invocation a {R} x {C} block of queries x keys. HD4 (head_dim / 4) is filled in when the",
        "// pipeline is built.",
        "",
        PARAMS + "@group(0) @binding(2) var<storage, read_write> s: array<vec4f>;",
        "",
        "const HD4: u32 = {HD4}u;",
        "const MASKED: f32 = -3.0e38;",
        "",
        "fn masked(i: u32, j: u32) -> bool {",
        "    return j >= p.seq || (p.causal != 0u && j > i);",
        "}",
        "",
        "// Four keys' scores of query i from key j0 on; keys past the padded row are not stored.",
        "fn put(row: u32, i: u32, j0: u32, a: vec4f) {",
        "    if i >= p.seq || j0 >= p.cols { return; }",
        "    var out = a * p.scale;",
        "    for (var c = 0u; c < 4u; c++) {",
        "        if masked(i, j0 + c) { out[c] = MASKED; }",
        "    }",
        "    s[row * (p.cols / 4u) + j0 / 4u] = out;",
        "}",
        "",
        "// One invocation per block, the key blocks numbered fastest; z: batch * heads.",
        "@compute @workgroup_size(32)",
        "fn main(@builtin(global_invocation_id) g: vec3u) {",
        f"    let key_blocks = (p.cols + {C - 1}u) / {C}u;",
        f"    let j0 = (g.x % key_blocks) * {C}u;",
        f"    let i0 = (g.x / key_blocks) * {R}u;",
        "    if i0 >= p.seq { return; }",
        "    let batch = g.z / p.heads;",
        "    let head = g.z % p.heads;",
        "    let first = batch * p.seq;",
        "    let last = p.seq - 1u;",
        "    let h4 = p.hidden / 4u;",
        "    let stride = 3u * h4;",
        "    let row0 = g.z * p.seq + i0;",
    ]
    lines += [f"    let q_at{r} = (first + min(i0 + {r}u, last)) * stride + head * HD4;" for r in rows]
    lines += [f"    let k_at{c} = (first + min(j0 + {c}u, last)) * stride + h4 + head * HD4;" for c in cols]
    lines += ["    " + " ".join(f"var s{r}_{v} = vec4f();" for v in vecs) for r in rows]
    lines.append("    for (var t = 0u; t < HD4; t++) {")
    lines += [f"        let q{r} = qkv[q_at{r} + t];" for r in rows]
    lines += [f"        let k{c} = qkv[k_at{c} + t];" for c in cols]
    for r in rows:
        dots = (f"s{r}_{v} += vec4f({', '.join(f'dot(q{r}, k{4 * v + c})' for c in range(4))});" for v in vecs)
        lines.append("        " + " ".join(dots))
    lines.append("    }")
    lines += ["    " + " ".join(f"put(row0 + {r}u, i0 + {r}u, j0 + {4 * v}u, s{r}_{v});" for v in vecs) for r in rows]
    lines.append("}")
    return "\n".join(lines) + "\n"


def pv(R: int, D: int) -> str:
    rows, ds = range(R), range(D)
    lines = [
        "// Written by tools/gen_attention_wgsl.py; edit that, not this file.",
        "//",
        "// Attention, step 3 of 3, as pv.wgsl computes it (the same parameters and layout), each",
        f"// invocation {R} queries x {D} vec4 of the head's values (the last block of a head's vec4",
        "// reads its last one again and does not store it). HD4 (head_dim / 4) is filled in when the",
        "// pipeline is built.",
        "",
        PARAMS + "@group(0) @binding(2) var<storage, read> s: array<vec4f>;",
        "@group(0) @binding(3) var<storage, read_write> out: array<vec4f>;",
        "",
        "const HD4: u32 = {HD4}u;",
        "",
        "// One invocation per block, the blocks of values numbered fastest; z: batch * heads.",
        "@compute @workgroup_size(32)",
        "fn main(@builtin(global_invocation_id) g: vec3u) {",
        f"    let value_blocks = (HD4 + {D - 1}u) / {D}u;",
        f"    let dv = (g.x % value_blocks) * {D}u;",
        f"    let i0 = (g.x / value_blocks) * {R}u;",
        "    if i0 >= p.seq { return; }",
        "    let batch = g.z / p.heads;",
        "    let head = g.z % p.heads;",
        "    let first = batch * p.seq;",
        "    let last = p.seq - 1u;",
        "    let h4 = p.hidden / 4u;",
        "    let stride = 3u * h4;",
        "    let n4 = p.cols / 4u;",
        "    let row0 = g.z * p.seq + i0;",
        "    // Queries past the end read the last one again; their results are not stored.",
        "    let rows_left = p.seq - 1u - i0;",
        "    let col = head * HD4;",
        "    let v_at = 2u * h4 + col;",
    ]
    lines += [f"    let d{d} = min(dv + {d}u, HD4 - 1u);" for d in ds]
    lines += [f"    let p_at{r} = (row0 + min({r}u, rows_left)) * n4;" for r in rows]
    lines += ["    " + " ".join(f"var c{r}_{d} = vec4f();" for d in ds) for r in rows]
    lines.append("    for (var j4 = 0u; j4 < n4; j4++) {")
    lines += [f"        let p{r} = s[p_at{r} + j4];" for r in rows]
    for q, comp in enumerate("xyzw"):
        lines.append("        {")
        if q == 0:
            lines.append("            // Padding keys have probability 0; they read the last value row.")
        lines.append(f"            let at = (first + min(j4 * 4u + {q}u, last)) * stride + v_at;")
        lines.append("            " + " ".join(f"let v{d} = qkv[at + d{d}];" for d in ds))
        lines += ["            " + " ".join(f"c{r}_{d} += p{r}.{comp} * v{d};" for d in ds) for r in rows]
        lines.append("        }")
    lines.append("    }")
    for r in rows:
        lines.append(f"    if i0 + {r}u < p.seq {{")
        lines.append(f"        let at = (first + i0 + {r}u) * h4 + col;")
        lines += [f"        if dv + {d}u < HD4 {{ out[at + d{d}] = c{r}_{d}; }}" for d in ds]
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    folder = Path(__file__).resolve().parent.parent / "src/engine/gpu"
    (folder / "scores_wide.wgsl").write_text(scores(*SCORES))
    (folder / "pv_wide.wgsl").write_text(pv(*PV))
    print(f"wrote {folder}/scores_wide.wgsl ({SCORES[0]} x {SCORES[1]}) and pv_wide.wgsl ({PV[0]} x {PV[1]} vec4)")
