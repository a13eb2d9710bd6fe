// Written by tools/gen_matmul_wgsl.py (block shapes chosen there); edit that, not this file.
//
// out[m, n] = act(a[m, k] · w[k, n] + bias[n]) (+ out[m, n] with RESIDUAL), all row-major.
// Each invocation computes a block of outputs in registers: `main` 16 x 24, `small` 8 x 8.
// No workgroup memory, no barriers, and the inner loop is unrolled with named vector
// components: on a CPU implementation of WebGPU (SwiftShader) a shared-memory tiled kernel is
// an order of magnitude slower (barriers are coroutine switches there), and `a[j]` with a loop
// index j slower than `a.x` (a dynamic vector index becomes selects).
// Needs k % 4 == 0 and n % 4 == 0 (4-bit weights: n % 8 == 0; blocks a multiple of 4); rows
// and columns past the end read the last one again, and their results are not stored.
//
// a: activations quantized to 8 bits per row (quantize_rows.wgsl: each row times the weights'
// per-k scales, then round(x * 127 / max |x|)), four k to a word [m, k / 4], and the rows'
// scales (`a_scale` [m], binding 5). w: the 8-bit integers of a q8 pack's [k, n] matrix, four k
// of one column to a word, a vec4 of words per 4 columns [k / 4, n / 4]. The products are
// integers (`dot4I8Packed`, exact in i32), scaled by the row's scale in the epilogue.
struct Params { m: u32, n: u32, k: u32, flags: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<vec4u>;
@group(0) @binding(3) var<storage, read> bias: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;
@group(0) @binding(5) var<storage, read> a_scale: array<f32>;

// The 4 columns of word vector `w` against the 4 k of `x`.
fn dots(x: u32, w: vec4u) -> vec4i {
    return vec4i(dot4I8Packed(x, w.x), dot4I8Packed(x, w.y), dot4I8Packed(x, w.z), dot4I8Packed(x, w.w));
}

const RESIDUAL: u32 = 16u;

fn activate(x: vec4f, act: u32) -> vec4f {
    switch act {
        case 1u: { return x / (1.0 + exp(-1.702 * x)); } // quick_gelu
        case 2u: { // gelu_tanh
            return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
        }
        case 3u: { return max(x, vec4f(0.0)); } // relu
        case 4u: { return x / (1.0 + exp(-x)); } // silu
        default: { return x; }
    }
}

fn store_2(row: u32, col: u32, c: array<vec4i, 2>) {
    if row >= p.m { return; }
    let n4 = p.n / 4u;
    for (var v = 0u; v < 2u; v++) {
        if col + v >= n4 { return; }
        let at = row * n4 + col + v;
        var value = activate(vec4f(c[v]) * a_scale[row] + bias[col + v], p.flags & 15u);
        if (p.flags & RESIDUAL) != 0u { value += out[at]; }
        out[at] = value;
    }
}

fn store_6(row: u32, col: u32, c: array<vec4i, 6>) {
    if row >= p.m { return; }
    let n4 = p.n / 4u;
    for (var v = 0u; v < 6u; v++) {
        if col + v >= n4 { return; }
        let at = row * n4 + col + v;
        var value = activate(vec4f(c[v]) * a_scale[row] + bias[col + v], p.flags & 15u);
        if (p.flags & RESIDUAL) != 0u { value += out[at]; }
        out[at] = value;
    }
}

// One invocation per block, numbered with the column blocks fastest, so that every lane has work
// however narrow the output (the decoder's 64 columns are 3 blocks) and lanes side by side
// mostly share their rows. Grids over 65535 workgroups wrap into y.
@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) groups: vec3u) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let blocks = (n4 + 5u) / 6u;
    let i = g.x + g.y * groups.x * 32u;
    let col = (i % blocks) * 6u;
    let m0 = (i / blocks) * 16u;
    if m0 >= p.m { return; }
    let last = p.m - 1u;
    let r0 = min(m0 + 0u, last) * k4;
    let r1 = min(m0 + 1u, last) * k4;
    let r2 = min(m0 + 2u, last) * k4;
    let r3 = min(m0 + 3u, last) * k4;
    let r4 = min(m0 + 4u, last) * k4;
    let r5 = min(m0 + 5u, last) * k4;
    let r6 = min(m0 + 6u, last) * k4;
    let r7 = min(m0 + 7u, last) * k4;
    let r8 = min(m0 + 8u, last) * k4;
    let r9 = min(m0 + 9u, last) * k4;
    let r10 = min(m0 + 10u, last) * k4;
    let r11 = min(m0 + 11u, last) * k4;
    let r12 = min(m0 + 12u, last) * k4;
    let r13 = min(m0 + 13u, last) * k4;
    let r14 = min(m0 + 14u, last) * k4;
    let r15 = min(m0 + 15u, last) * k4;
    let j0 = min(col + 0u, n4 - 1u);
    let j1 = min(col + 1u, n4 - 1u);
    let j2 = min(col + 2u, n4 - 1u);
    let j3 = min(col + 3u, n4 - 1u);
    let j4 = min(col + 4u, n4 - 1u);
    let j5 = min(col + 5u, n4 - 1u);
    var c0_0 = vec4i(); var c0_1 = vec4i(); var c0_2 = vec4i(); var c0_3 = vec4i(); var c0_4 = vec4i(); var c0_5 = vec4i();
    var c1_0 = vec4i(); var c1_1 = vec4i(); var c1_2 = vec4i(); var c1_3 = vec4i(); var c1_4 = vec4i(); var c1_5 = vec4i();
    var c2_0 = vec4i(); var c2_1 = vec4i(); var c2_2 = vec4i(); var c2_3 = vec4i(); var c2_4 = vec4i(); var c2_5 = vec4i();
    var c3_0 = vec4i(); var c3_1 = vec4i(); var c3_2 = vec4i(); var c3_3 = vec4i(); var c3_4 = vec4i(); var c3_5 = vec4i();
    var c4_0 = vec4i(); var c4_1 = vec4i(); var c4_2 = vec4i(); var c4_3 = vec4i(); var c4_4 = vec4i(); var c4_5 = vec4i();
    var c5_0 = vec4i(); var c5_1 = vec4i(); var c5_2 = vec4i(); var c5_3 = vec4i(); var c5_4 = vec4i(); var c5_5 = vec4i();
    var c6_0 = vec4i(); var c6_1 = vec4i(); var c6_2 = vec4i(); var c6_3 = vec4i(); var c6_4 = vec4i(); var c6_5 = vec4i();
    var c7_0 = vec4i(); var c7_1 = vec4i(); var c7_2 = vec4i(); var c7_3 = vec4i(); var c7_4 = vec4i(); var c7_5 = vec4i();
    var c8_0 = vec4i(); var c8_1 = vec4i(); var c8_2 = vec4i(); var c8_3 = vec4i(); var c8_4 = vec4i(); var c8_5 = vec4i();
    var c9_0 = vec4i(); var c9_1 = vec4i(); var c9_2 = vec4i(); var c9_3 = vec4i(); var c9_4 = vec4i(); var c9_5 = vec4i();
    var c10_0 = vec4i(); var c10_1 = vec4i(); var c10_2 = vec4i(); var c10_3 = vec4i(); var c10_4 = vec4i(); var c10_5 = vec4i();
    var c11_0 = vec4i(); var c11_1 = vec4i(); var c11_2 = vec4i(); var c11_3 = vec4i(); var c11_4 = vec4i(); var c11_5 = vec4i();
    var c12_0 = vec4i(); var c12_1 = vec4i(); var c12_2 = vec4i(); var c12_3 = vec4i(); var c12_4 = vec4i(); var c12_5 = vec4i();
    var c13_0 = vec4i(); var c13_1 = vec4i(); var c13_2 = vec4i(); var c13_3 = vec4i(); var c13_4 = vec4i(); var c13_5 = vec4i();
    var c14_0 = vec4i(); var c14_1 = vec4i(); var c14_2 = vec4i(); var c14_3 = vec4i(); var c14_4 = vec4i(); var c14_5 = vec4i();
    var c15_0 = vec4i(); var c15_1 = vec4i(); var c15_2 = vec4i(); var c15_3 = vec4i(); var c15_4 = vec4i(); var c15_5 = vec4i();
    for (var kk = 0u; kk < k4; kk++) {
        let a0 = a[r0 + kk];
        let a1 = a[r1 + kk];
        let a2 = a[r2 + kk];
        let a3 = a[r3 + kk];
        let a4 = a[r4 + kk];
        let a5 = a[r5 + kk];
        let a6 = a[r6 + kk];
        let a7 = a[r7 + kk];
        let a8 = a[r8 + kk];
        let a9 = a[r9 + kk];
        let a10 = a[r10 + kk];
        let a11 = a[r11 + kk];
        let a12 = a[r12 + kk];
        let a13 = a[r13 + kk];
        let a14 = a[r14 + kk];
        let a15 = a[r15 + kk];
        let w0 = w[kk * n4 + j0]; let w1 = w[kk * n4 + j1]; let w2 = w[kk * n4 + j2]; let w3 = w[kk * n4 + j3]; let w4 = w[kk * n4 + j4]; let w5 = w[kk * n4 + j5];
        c0_0 += dots(a0, w0); c0_1 += dots(a0, w1); c0_2 += dots(a0, w2); c0_3 += dots(a0, w3); c0_4 += dots(a0, w4); c0_5 += dots(a0, w5);
        c1_0 += dots(a1, w0); c1_1 += dots(a1, w1); c1_2 += dots(a1, w2); c1_3 += dots(a1, w3); c1_4 += dots(a1, w4); c1_5 += dots(a1, w5);
        c2_0 += dots(a2, w0); c2_1 += dots(a2, w1); c2_2 += dots(a2, w2); c2_3 += dots(a2, w3); c2_4 += dots(a2, w4); c2_5 += dots(a2, w5);
        c3_0 += dots(a3, w0); c3_1 += dots(a3, w1); c3_2 += dots(a3, w2); c3_3 += dots(a3, w3); c3_4 += dots(a3, w4); c3_5 += dots(a3, w5);
        c4_0 += dots(a4, w0); c4_1 += dots(a4, w1); c4_2 += dots(a4, w2); c4_3 += dots(a4, w3); c4_4 += dots(a4, w4); c4_5 += dots(a4, w5);
        c5_0 += dots(a5, w0); c5_1 += dots(a5, w1); c5_2 += dots(a5, w2); c5_3 += dots(a5, w3); c5_4 += dots(a5, w4); c5_5 += dots(a5, w5);
        c6_0 += dots(a6, w0); c6_1 += dots(a6, w1); c6_2 += dots(a6, w2); c6_3 += dots(a6, w3); c6_4 += dots(a6, w4); c6_5 += dots(a6, w5);
        c7_0 += dots(a7, w0); c7_1 += dots(a7, w1); c7_2 += dots(a7, w2); c7_3 += dots(a7, w3); c7_4 += dots(a7, w4); c7_5 += dots(a7, w5);
        c8_0 += dots(a8, w0); c8_1 += dots(a8, w1); c8_2 += dots(a8, w2); c8_3 += dots(a8, w3); c8_4 += dots(a8, w4); c8_5 += dots(a8, w5);
        c9_0 += dots(a9, w0); c9_1 += dots(a9, w1); c9_2 += dots(a9, w2); c9_3 += dots(a9, w3); c9_4 += dots(a9, w4); c9_5 += dots(a9, w5);
        c10_0 += dots(a10, w0); c10_1 += dots(a10, w1); c10_2 += dots(a10, w2); c10_3 += dots(a10, w3); c10_4 += dots(a10, w4); c10_5 += dots(a10, w5);
        c11_0 += dots(a11, w0); c11_1 += dots(a11, w1); c11_2 += dots(a11, w2); c11_3 += dots(a11, w3); c11_4 += dots(a11, w4); c11_5 += dots(a11, w5);
        c12_0 += dots(a12, w0); c12_1 += dots(a12, w1); c12_2 += dots(a12, w2); c12_3 += dots(a12, w3); c12_4 += dots(a12, w4); c12_5 += dots(a12, w5);
        c13_0 += dots(a13, w0); c13_1 += dots(a13, w1); c13_2 += dots(a13, w2); c13_3 += dots(a13, w3); c13_4 += dots(a13, w4); c13_5 += dots(a13, w5);
        c14_0 += dots(a14, w0); c14_1 += dots(a14, w1); c14_2 += dots(a14, w2); c14_3 += dots(a14, w3); c14_4 += dots(a14, w4); c14_5 += dots(a14, w5);
        c15_0 += dots(a15, w0); c15_1 += dots(a15, w1); c15_2 += dots(a15, w2); c15_3 += dots(a15, w3); c15_4 += dots(a15, w4); c15_5 += dots(a15, w5);
    }
    store_6(m0 + 0u, col, array(c0_0, c0_1, c0_2, c0_3, c0_4, c0_5));
    store_6(m0 + 1u, col, array(c1_0, c1_1, c1_2, c1_3, c1_4, c1_5));
    store_6(m0 + 2u, col, array(c2_0, c2_1, c2_2, c2_3, c2_4, c2_5));
    store_6(m0 + 3u, col, array(c3_0, c3_1, c3_2, c3_3, c3_4, c3_5));
    store_6(m0 + 4u, col, array(c4_0, c4_1, c4_2, c4_3, c4_4, c4_5));
    store_6(m0 + 5u, col, array(c5_0, c5_1, c5_2, c5_3, c5_4, c5_5));
    store_6(m0 + 6u, col, array(c6_0, c6_1, c6_2, c6_3, c6_4, c6_5));
    store_6(m0 + 7u, col, array(c7_0, c7_1, c7_2, c7_3, c7_4, c7_5));
    store_6(m0 + 8u, col, array(c8_0, c8_1, c8_2, c8_3, c8_4, c8_5));
    store_6(m0 + 9u, col, array(c9_0, c9_1, c9_2, c9_3, c9_4, c9_5));
    store_6(m0 + 10u, col, array(c10_0, c10_1, c10_2, c10_3, c10_4, c10_5));
    store_6(m0 + 11u, col, array(c11_0, c11_1, c11_2, c11_3, c11_4, c11_5));
    store_6(m0 + 12u, col, array(c12_0, c12_1, c12_2, c12_3, c12_4, c12_5));
    store_6(m0 + 13u, col, array(c13_0, c13_1, c13_2, c13_3, c13_4, c13_5));
    store_6(m0 + 14u, col, array(c14_0, c14_1, c14_2, c14_3, c14_4, c14_5));
    store_6(m0 + 15u, col, array(c15_0, c15_1, c15_2, c15_3, c15_4, c15_5));
}

@compute @workgroup_size(32)
fn small(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) groups: vec3u) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let blocks = (n4 + 1u) / 2u;
    let i = g.x + g.y * groups.x * 32u;
    let col = (i % blocks) * 2u;
    let m0 = (i / blocks) * 8u;
    if m0 >= p.m { return; }
    let last = p.m - 1u;
    let r0 = min(m0 + 0u, last) * k4;
    let r1 = min(m0 + 1u, last) * k4;
    let r2 = min(m0 + 2u, last) * k4;
    let r3 = min(m0 + 3u, last) * k4;
    let r4 = min(m0 + 4u, last) * k4;
    let r5 = min(m0 + 5u, last) * k4;
    let r6 = min(m0 + 6u, last) * k4;
    let r7 = min(m0 + 7u, last) * k4;
    let j0 = min(col + 0u, n4 - 1u);
    let j1 = min(col + 1u, n4 - 1u);
    var c0_0 = vec4i(); var c0_1 = vec4i();
    var c1_0 = vec4i(); var c1_1 = vec4i();
    var c2_0 = vec4i(); var c2_1 = vec4i();
    var c3_0 = vec4i(); var c3_1 = vec4i();
    var c4_0 = vec4i(); var c4_1 = vec4i();
    var c5_0 = vec4i(); var c5_1 = vec4i();
    var c6_0 = vec4i(); var c6_1 = vec4i();
    var c7_0 = vec4i(); var c7_1 = vec4i();
    for (var kk = 0u; kk < k4; kk++) {
        let a0 = a[r0 + kk];
        let a1 = a[r1 + kk];
        let a2 = a[r2 + kk];
        let a3 = a[r3 + kk];
        let a4 = a[r4 + kk];
        let a5 = a[r5 + kk];
        let a6 = a[r6 + kk];
        let a7 = a[r7 + kk];
        let w0 = w[kk * n4 + j0]; let w1 = w[kk * n4 + j1];
        c0_0 += dots(a0, w0); c0_1 += dots(a0, w1);
        c1_0 += dots(a1, w0); c1_1 += dots(a1, w1);
        c2_0 += dots(a2, w0); c2_1 += dots(a2, w1);
        c3_0 += dots(a3, w0); c3_1 += dots(a3, w1);
        c4_0 += dots(a4, w0); c4_1 += dots(a4, w1);
        c5_0 += dots(a5, w0); c5_1 += dots(a5, w1);
        c6_0 += dots(a6, w0); c6_1 += dots(a6, w1);
        c7_0 += dots(a7, w0); c7_1 += dots(a7, w1);
    }
    store_2(m0 + 0u, col, array(c0_0, c0_1));
    store_2(m0 + 1u, col, array(c1_0, c1_1));
    store_2(m0 + 2u, col, array(c2_0, c2_1));
    store_2(m0 + 3u, col, array(c3_0, c3_1));
    store_2(m0 + 4u, col, array(c4_0, c4_1));
    store_2(m0 + 5u, col, array(c5_0, c5_1));
    store_2(m0 + 6u, col, array(c6_0, c6_1));
    store_2(m0 + 7u, col, array(c7_0, c7_1));
}
