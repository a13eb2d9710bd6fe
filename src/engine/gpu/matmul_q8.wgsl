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

fn store_2(row: u32, col: u32, c: array<vec4f, 2>) {
    if row >= p.m { return; }
    let n4 = p.n / 4u;
    for (var v = 0u; v < 2u; v++) {
        if col + v >= n4 { return; }
        let at = row * n4 + col + v;
        var value = activate(c[v] + bias[col + v], p.flags & 15u);
        if (p.flags & RESIDUAL) != 0u { value += out[at]; }
        out[at] = value;
    }
}

fn store_6(row: u32, col: u32, c: array<vec4f, 6>) {
    if row >= p.m { return; }
    let n4 = p.n / 4u;
    for (var v = 0u; v < 6u; v++) {
        if col + v >= n4 { return; }
        let at = row * n4 + col + v;
        var value = activate(c[v] + bias[col + v], p.flags & 15u);
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
    let nb = (p.n + p.block - 1u) / p.block;
    let s0 = (j0 * 4u) / p.block;
    let s1 = (j1 * 4u) / p.block;
    let s2 = (j2 * 4u) / p.block;
    let s3 = (j3 * 4u) / p.block;
    let s4 = (j4 * 4u) / p.block;
    let s5 = (j5 * 4u) / p.block;
    var c0_0 = vec4f(); var c0_1 = vec4f(); var c0_2 = vec4f(); var c0_3 = vec4f(); var c0_4 = vec4f(); var c0_5 = vec4f();
    var c1_0 = vec4f(); var c1_1 = vec4f(); var c1_2 = vec4f(); var c1_3 = vec4f(); var c1_4 = vec4f(); var c1_5 = vec4f();
    var c2_0 = vec4f(); var c2_1 = vec4f(); var c2_2 = vec4f(); var c2_3 = vec4f(); var c2_4 = vec4f(); var c2_5 = vec4f();
    var c3_0 = vec4f(); var c3_1 = vec4f(); var c3_2 = vec4f(); var c3_3 = vec4f(); var c3_4 = vec4f(); var c3_5 = vec4f();
    var c4_0 = vec4f(); var c4_1 = vec4f(); var c4_2 = vec4f(); var c4_3 = vec4f(); var c4_4 = vec4f(); var c4_5 = vec4f();
    var c5_0 = vec4f(); var c5_1 = vec4f(); var c5_2 = vec4f(); var c5_3 = vec4f(); var c5_4 = vec4f(); var c5_5 = vec4f();
    var c6_0 = vec4f(); var c6_1 = vec4f(); var c6_2 = vec4f(); var c6_3 = vec4f(); var c6_4 = vec4f(); var c6_5 = vec4f();
    var c7_0 = vec4f(); var c7_1 = vec4f(); var c7_2 = vec4f(); var c7_3 = vec4f(); var c7_4 = vec4f(); var c7_5 = vec4f();
    var c8_0 = vec4f(); var c8_1 = vec4f(); var c8_2 = vec4f(); var c8_3 = vec4f(); var c8_4 = vec4f(); var c8_5 = vec4f();
    var c9_0 = vec4f(); var c9_1 = vec4f(); var c9_2 = vec4f(); var c9_3 = vec4f(); var c9_4 = vec4f(); var c9_5 = vec4f();
    var c10_0 = vec4f(); var c10_1 = vec4f(); var c10_2 = vec4f(); var c10_3 = vec4f(); var c10_4 = vec4f(); var c10_5 = vec4f();
    var c11_0 = vec4f(); var c11_1 = vec4f(); var c11_2 = vec4f(); var c11_3 = vec4f(); var c11_4 = vec4f(); var c11_5 = vec4f();
    var c12_0 = vec4f(); var c12_1 = vec4f(); var c12_2 = vec4f(); var c12_3 = vec4f(); var c12_4 = vec4f(); var c12_5 = vec4f();
    var c13_0 = vec4f(); var c13_1 = vec4f(); var c13_2 = vec4f(); var c13_3 = vec4f(); var c13_4 = vec4f(); var c13_5 = vec4f();
    var c14_0 = vec4f(); var c14_1 = vec4f(); var c14_2 = vec4f(); var c14_3 = vec4f(); var c14_4 = vec4f(); var c14_5 = vec4f();
    var c15_0 = vec4f(); var c15_1 = vec4f(); var c15_2 = vec4f(); var c15_3 = vec4f(); var c15_4 = vec4f(); var c15_5 = vec4f();
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
        {
            let at = (kk * 4u + 0u) * n4;
            let sr = (kk * 4u + 0u) * nb;
            let w0 = ints(w[at + j0]) * scales[sr + s0]; let w1 = ints(w[at + j1]) * scales[sr + s1]; let w2 = ints(w[at + j2]) * scales[sr + s2]; let w3 = ints(w[at + j3]) * scales[sr + s3]; let w4 = ints(w[at + j4]) * scales[sr + s4]; let w5 = ints(w[at + j5]) * scales[sr + s5];
            c0_0 += a0.x * w0; c0_1 += a0.x * w1; c0_2 += a0.x * w2; c0_3 += a0.x * w3; c0_4 += a0.x * w4; c0_5 += a0.x * w5;
            c1_0 += a1.x * w0; c1_1 += a1.x * w1; c1_2 += a1.x * w2; c1_3 += a1.x * w3; c1_4 += a1.x * w4; c1_5 += a1.x * w5;
            c2_0 += a2.x * w0; c2_1 += a2.x * w1; c2_2 += a2.x * w2; c2_3 += a2.x * w3; c2_4 += a2.x * w4; c2_5 += a2.x * w5;
            c3_0 += a3.x * w0; c3_1 += a3.x * w1; c3_2 += a3.x * w2; c3_3 += a3.x * w3; c3_4 += a3.x * w4; c3_5 += a3.x * w5;
            c4_0 += a4.x * w0; c4_1 += a4.x * w1; c4_2 += a4.x * w2; c4_3 += a4.x * w3; c4_4 += a4.x * w4; c4_5 += a4.x * w5;
            c5_0 += a5.x * w0; c5_1 += a5.x * w1; c5_2 += a5.x * w2; c5_3 += a5.x * w3; c5_4 += a5.x * w4; c5_5 += a5.x * w5;
            c6_0 += a6.x * w0; c6_1 += a6.x * w1; c6_2 += a6.x * w2; c6_3 += a6.x * w3; c6_4 += a6.x * w4; c6_5 += a6.x * w5;
            c7_0 += a7.x * w0; c7_1 += a7.x * w1; c7_2 += a7.x * w2; c7_3 += a7.x * w3; c7_4 += a7.x * w4; c7_5 += a7.x * w5;
            c8_0 += a8.x * w0; c8_1 += a8.x * w1; c8_2 += a8.x * w2; c8_3 += a8.x * w3; c8_4 += a8.x * w4; c8_5 += a8.x * w5;
            c9_0 += a9.x * w0; c9_1 += a9.x * w1; c9_2 += a9.x * w2; c9_3 += a9.x * w3; c9_4 += a9.x * w4; c9_5 += a9.x * w5;
            c10_0 += a10.x * w0; c10_1 += a10.x * w1; c10_2 += a10.x * w2; c10_3 += a10.x * w3; c10_4 += a10.x * w4; c10_5 += a10.x * w5;
            c11_0 += a11.x * w0; c11_1 += a11.x * w1; c11_2 += a11.x * w2; c11_3 += a11.x * w3; c11_4 += a11.x * w4; c11_5 += a11.x * w5;
            c12_0 += a12.x * w0; c12_1 += a12.x * w1; c12_2 += a12.x * w2; c12_3 += a12.x * w3; c12_4 += a12.x * w4; c12_5 += a12.x * w5;
            c13_0 += a13.x * w0; c13_1 += a13.x * w1; c13_2 += a13.x * w2; c13_3 += a13.x * w3; c13_4 += a13.x * w4; c13_5 += a13.x * w5;
            c14_0 += a14.x * w0; c14_1 += a14.x * w1; c14_2 += a14.x * w2; c14_3 += a14.x * w3; c14_4 += a14.x * w4; c14_5 += a14.x * w5;
            c15_0 += a15.x * w0; c15_1 += a15.x * w1; c15_2 += a15.x * w2; c15_3 += a15.x * w3; c15_4 += a15.x * w4; c15_5 += a15.x * w5;
        }
        {
            let at = (kk * 4u + 1u) * n4;
            let sr = (kk * 4u + 1u) * nb;
            let w0 = ints(w[at + j0]) * scales[sr + s0]; let w1 = ints(w[at + j1]) * scales[sr + s1]; let w2 = ints(w[at + j2]) * scales[sr + s2]; let w3 = ints(w[at + j3]) * scales[sr + s3]; let w4 = ints(w[at + j4]) * scales[sr + s4]; let w5 = ints(w[at + j5]) * scales[sr + s5];
            c0_0 += a0.y * w0; c0_1 += a0.y * w1; c0_2 += a0.y * w2; c0_3 += a0.y * w3; c0_4 += a0.y * w4; c0_5 += a0.y * w5;
            c1_0 += a1.y * w0; c1_1 += a1.y * w1; c1_2 += a1.y * w2; c1_3 += a1.y * w3; c1_4 += a1.y * w4; c1_5 += a1.y * w5;
            c2_0 += a2.y * w0; c2_1 += a2.y * w1; c2_2 += a2.y * w2; c2_3 += a2.y * w3; c2_4 += a2.y * w4; c2_5 += a2.y * w5;
            c3_0 += a3.y * w0; c3_1 += a3.y * w1; c3_2 += a3.y * w2; c3_3 += a3.y * w3; c3_4 += a3.y * w4; c3_5 += a3.y * w5;
            c4_0 += a4.y * w0; c4_1 += a4.y * w1; c4_2 += a4.y * w2; c4_3 += a4.y * w3; c4_4 += a4.y * w4; c4_5 += a4.y * w5;
            c5_0 += a5.y * w0; c5_1 += a5.y * w1; c5_2 += a5.y * w2; c5_3 += a5.y * w3; c5_4 += a5.y * w4; c5_5 += a5.y * w5;
            c6_0 += a6.y * w0; c6_1 += a6.y * w1; c6_2 += a6.y * w2; c6_3 += a6.y * w3; c6_4 += a6.y * w4; c6_5 += a6.y * w5;
            c7_0 += a7.y * w0; c7_1 += a7.y * w1; c7_2 += a7.y * w2; c7_3 += a7.y * w3; c7_4 += a7.y * w4; c7_5 += a7.y * w5;
            c8_0 += a8.y * w0; c8_1 += a8.y * w1; c8_2 += a8.y * w2; c8_3 += a8.y * w3; c8_4 += a8.y * w4; c8_5 += a8.y * w5;
            c9_0 += a9.y * w0; c9_1 += a9.y * w1; c9_2 += a9.y * w2; c9_3 += a9.y * w3; c9_4 += a9.y * w4; c9_5 += a9.y * w5;
            c10_0 += a10.y * w0; c10_1 += a10.y * w1; c10_2 += a10.y * w2; c10_3 += a10.y * w3; c10_4 += a10.y * w4; c10_5 += a10.y * w5;
            c11_0 += a11.y * w0; c11_1 += a11.y * w1; c11_2 += a11.y * w2; c11_3 += a11.y * w3; c11_4 += a11.y * w4; c11_5 += a11.y * w5;
            c12_0 += a12.y * w0; c12_1 += a12.y * w1; c12_2 += a12.y * w2; c12_3 += a12.y * w3; c12_4 += a12.y * w4; c12_5 += a12.y * w5;
            c13_0 += a13.y * w0; c13_1 += a13.y * w1; c13_2 += a13.y * w2; c13_3 += a13.y * w3; c13_4 += a13.y * w4; c13_5 += a13.y * w5;
            c14_0 += a14.y * w0; c14_1 += a14.y * w1; c14_2 += a14.y * w2; c14_3 += a14.y * w3; c14_4 += a14.y * w4; c14_5 += a14.y * w5;
            c15_0 += a15.y * w0; c15_1 += a15.y * w1; c15_2 += a15.y * w2; c15_3 += a15.y * w3; c15_4 += a15.y * w4; c15_5 += a15.y * w5;
        }
        {
            let at = (kk * 4u + 2u) * n4;
            let sr = (kk * 4u + 2u) * nb;
            let w0 = ints(w[at + j0]) * scales[sr + s0]; let w1 = ints(w[at + j1]) * scales[sr + s1]; let w2 = ints(w[at + j2]) * scales[sr + s2]; let w3 = ints(w[at + j3]) * scales[sr + s3]; let w4 = ints(w[at + j4]) * scales[sr + s4]; let w5 = ints(w[at + j5]) * scales[sr + s5];
            c0_0 += a0.z * w0; c0_1 += a0.z * w1; c0_2 += a0.z * w2; c0_3 += a0.z * w3; c0_4 += a0.z * w4; c0_5 += a0.z * w5;
            c1_0 += a1.z * w0; c1_1 += a1.z * w1; c1_2 += a1.z * w2; c1_3 += a1.z * w3; c1_4 += a1.z * w4; c1_5 += a1.z * w5;
            c2_0 += a2.z * w0; c2_1 += a2.z * w1; c2_2 += a2.z * w2; c2_3 += a2.z * w3; c2_4 += a2.z * w4; c2_5 += a2.z * w5;
            c3_0 += a3.z * w0; c3_1 += a3.z * w1; c3_2 += a3.z * w2; c3_3 += a3.z * w3; c3_4 += a3.z * w4; c3_5 += a3.z * w5;
            c4_0 += a4.z * w0; c4_1 += a4.z * w1; c4_2 += a4.z * w2; c4_3 += a4.z * w3; c4_4 += a4.z * w4; c4_5 += a4.z * w5;
            c5_0 += a5.z * w0; c5_1 += a5.z * w1; c5_2 += a5.z * w2; c5_3 += a5.z * w3; c5_4 += a5.z * w4; c5_5 += a5.z * w5;
            c6_0 += a6.z * w0; c6_1 += a6.z * w1; c6_2 += a6.z * w2; c6_3 += a6.z * w3; c6_4 += a6.z * w4; c6_5 += a6.z * w5;
            c7_0 += a7.z * w0; c7_1 += a7.z * w1; c7_2 += a7.z * w2; c7_3 += a7.z * w3; c7_4 += a7.z * w4; c7_5 += a7.z * w5;
            c8_0 += a8.z * w0; c8_1 += a8.z * w1; c8_2 += a8.z * w2; c8_3 += a8.z * w3; c8_4 += a8.z * w4; c8_5 += a8.z * w5;
            c9_0 += a9.z * w0; c9_1 += a9.z * w1; c9_2 += a9.z * w2; c9_3 += a9.z * w3; c9_4 += a9.z * w4; c9_5 += a9.z * w5;
            c10_0 += a10.z * w0; c10_1 += a10.z * w1; c10_2 += a10.z * w2; c10_3 += a10.z * w3; c10_4 += a10.z * w4; c10_5 += a10.z * w5;
            c11_0 += a11.z * w0; c11_1 += a11.z * w1; c11_2 += a11.z * w2; c11_3 += a11.z * w3; c11_4 += a11.z * w4; c11_5 += a11.z * w5;
            c12_0 += a12.z * w0; c12_1 += a12.z * w1; c12_2 += a12.z * w2; c12_3 += a12.z * w3; c12_4 += a12.z * w4; c12_5 += a12.z * w5;
            c13_0 += a13.z * w0; c13_1 += a13.z * w1; c13_2 += a13.z * w2; c13_3 += a13.z * w3; c13_4 += a13.z * w4; c13_5 += a13.z * w5;
            c14_0 += a14.z * w0; c14_1 += a14.z * w1; c14_2 += a14.z * w2; c14_3 += a14.z * w3; c14_4 += a14.z * w4; c14_5 += a14.z * w5;
            c15_0 += a15.z * w0; c15_1 += a15.z * w1; c15_2 += a15.z * w2; c15_3 += a15.z * w3; c15_4 += a15.z * w4; c15_5 += a15.z * w5;
        }
        {
            let at = (kk * 4u + 3u) * n4;
            let sr = (kk * 4u + 3u) * nb;
            let w0 = ints(w[at + j0]) * scales[sr + s0]; let w1 = ints(w[at + j1]) * scales[sr + s1]; let w2 = ints(w[at + j2]) * scales[sr + s2]; let w3 = ints(w[at + j3]) * scales[sr + s3]; let w4 = ints(w[at + j4]) * scales[sr + s4]; let w5 = ints(w[at + j5]) * scales[sr + s5];
            c0_0 += a0.w * w0; c0_1 += a0.w * w1; c0_2 += a0.w * w2; c0_3 += a0.w * w3; c0_4 += a0.w * w4; c0_5 += a0.w * w5;
            c1_0 += a1.w * w0; c1_1 += a1.w * w1; c1_2 += a1.w * w2; c1_3 += a1.w * w3; c1_4 += a1.w * w4; c1_5 += a1.w * w5;
            c2_0 += a2.w * w0; c2_1 += a2.w * w1; c2_2 += a2.w * w2; c2_3 += a2.w * w3; c2_4 += a2.w * w4; c2_5 += a2.w * w5;
            c3_0 += a3.w * w0; c3_1 += a3.w * w1; c3_2 += a3.w * w2; c3_3 += a3.w * w3; c3_4 += a3.w * w4; c3_5 += a3.w * w5;
            c4_0 += a4.w * w0; c4_1 += a4.w * w1; c4_2 += a4.w * w2; c4_3 += a4.w * w3; c4_4 += a4.w * w4; c4_5 += a4.w * w5;
            c5_0 += a5.w * w0; c5_1 += a5.w * w1; c5_2 += a5.w * w2; c5_3 += a5.w * w3; c5_4 += a5.w * w4; c5_5 += a5.w * w5;
            c6_0 += a6.w * w0; c6_1 += a6.w * w1; c6_2 += a6.w * w2; c6_3 += a6.w * w3; c6_4 += a6.w * w4; c6_5 += a6.w * w5;
            c7_0 += a7.w * w0; c7_1 += a7.w * w1; c7_2 += a7.w * w2; c7_3 += a7.w * w3; c7_4 += a7.w * w4; c7_5 += a7.w * w5;
            c8_0 += a8.w * w0; c8_1 += a8.w * w1; c8_2 += a8.w * w2; c8_3 += a8.w * w3; c8_4 += a8.w * w4; c8_5 += a8.w * w5;
            c9_0 += a9.w * w0; c9_1 += a9.w * w1; c9_2 += a9.w * w2; c9_3 += a9.w * w3; c9_4 += a9.w * w4; c9_5 += a9.w * w5;
            c10_0 += a10.w * w0; c10_1 += a10.w * w1; c10_2 += a10.w * w2; c10_3 += a10.w * w3; c10_4 += a10.w * w4; c10_5 += a10.w * w5;
            c11_0 += a11.w * w0; c11_1 += a11.w * w1; c11_2 += a11.w * w2; c11_3 += a11.w * w3; c11_4 += a11.w * w4; c11_5 += a11.w * w5;
            c12_0 += a12.w * w0; c12_1 += a12.w * w1; c12_2 += a12.w * w2; c12_3 += a12.w * w3; c12_4 += a12.w * w4; c12_5 += a12.w * w5;
            c13_0 += a13.w * w0; c13_1 += a13.w * w1; c13_2 += a13.w * w2; c13_3 += a13.w * w3; c13_4 += a13.w * w4; c13_5 += a13.w * w5;
            c14_0 += a14.w * w0; c14_1 += a14.w * w1; c14_2 += a14.w * w2; c14_3 += a14.w * w3; c14_4 += a14.w * w4; c14_5 += a14.w * w5;
            c15_0 += a15.w * w0; c15_1 += a15.w * w1; c15_2 += a15.w * w2; c15_3 += a15.w * w3; c15_4 += a15.w * w4; c15_5 += a15.w * w5;
        }
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
    let nb = (p.n + p.block - 1u) / p.block;
    let s0 = (j0 * 4u) / p.block;
    let s1 = (j1 * 4u) / p.block;
    var c0_0 = vec4f(); var c0_1 = vec4f();
    var c1_0 = vec4f(); var c1_1 = vec4f();
    var c2_0 = vec4f(); var c2_1 = vec4f();
    var c3_0 = vec4f(); var c3_1 = vec4f();
    var c4_0 = vec4f(); var c4_1 = vec4f();
    var c5_0 = vec4f(); var c5_1 = vec4f();
    var c6_0 = vec4f(); var c6_1 = vec4f();
    var c7_0 = vec4f(); var c7_1 = vec4f();
    for (var kk = 0u; kk < k4; kk++) {
        let a0 = a[r0 + kk];
        let a1 = a[r1 + kk];
        let a2 = a[r2 + kk];
        let a3 = a[r3 + kk];
        let a4 = a[r4 + kk];
        let a5 = a[r5 + kk];
        let a6 = a[r6 + kk];
        let a7 = a[r7 + kk];
        {
            let at = (kk * 4u + 0u) * n4;
            let sr = (kk * 4u + 0u) * nb;
            let w0 = ints(w[at + j0]) * scales[sr + s0]; let w1 = ints(w[at + j1]) * scales[sr + s1];
            c0_0 += a0.x * w0; c0_1 += a0.x * w1;
            c1_0 += a1.x * w0; c1_1 += a1.x * w1;
            c2_0 += a2.x * w0; c2_1 += a2.x * w1;
            c3_0 += a3.x * w0; c3_1 += a3.x * w1;
            c4_0 += a4.x * w0; c4_1 += a4.x * w1;
            c5_0 += a5.x * w0; c5_1 += a5.x * w1;
            c6_0 += a6.x * w0; c6_1 += a6.x * w1;
            c7_0 += a7.x * w0; c7_1 += a7.x * w1;
        }
        {
            let at = (kk * 4u + 1u) * n4;
            let sr = (kk * 4u + 1u) * nb;
            let w0 = ints(w[at + j0]) * scales[sr + s0]; let w1 = ints(w[at + j1]) * scales[sr + s1];
            c0_0 += a0.y * w0; c0_1 += a0.y * w1;
            c1_0 += a1.y * w0; c1_1 += a1.y * w1;
            c2_0 += a2.y * w0; c2_1 += a2.y * w1;
            c3_0 += a3.y * w0; c3_1 += a3.y * w1;
            c4_0 += a4.y * w0; c4_1 += a4.y * w1;
            c5_0 += a5.y * w0; c5_1 += a5.y * w1;
            c6_0 += a6.y * w0; c6_1 += a6.y * w1;
            c7_0 += a7.y * w0; c7_1 += a7.y * w1;
        }
        {
            let at = (kk * 4u + 2u) * n4;
            let sr = (kk * 4u + 2u) * nb;
            let w0 = ints(w[at + j0]) * scales[sr + s0]; let w1 = ints(w[at + j1]) * scales[sr + s1];
            c0_0 += a0.z * w0; c0_1 += a0.z * w1;
            c1_0 += a1.z * w0; c1_1 += a1.z * w1;
            c2_0 += a2.z * w0; c2_1 += a2.z * w1;
            c3_0 += a3.z * w0; c3_1 += a3.z * w1;
            c4_0 += a4.z * w0; c4_1 += a4.z * w1;
            c5_0 += a5.z * w0; c5_1 += a5.z * w1;
            c6_0 += a6.z * w0; c6_1 += a6.z * w1;
            c7_0 += a7.z * w0; c7_1 += a7.z * w1;
        }
        {
            let at = (kk * 4u + 3u) * n4;
            let sr = (kk * 4u + 3u) * nb;
            let w0 = ints(w[at + j0]) * scales[sr + s0]; let w1 = ints(w[at + j1]) * scales[sr + s1];
            c0_0 += a0.w * w0; c0_1 += a0.w * w1;
            c1_0 += a1.w * w0; c1_1 += a1.w * w1;
            c2_0 += a2.w * w0; c2_1 += a2.w * w1;
            c3_0 += a3.w * w0; c3_1 += a3.w * w1;
            c4_0 += a4.w * w0; c4_1 += a4.w * w1;
            c5_0 += a5.w * w0; c5_1 += a5.w * w1;
            c6_0 += a6.w * w0; c6_1 += a6.w * w1;
            c7_0 += a7.w * w0; c7_1 += a7.w * w1;
        }
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

// `main` for matrices whose every block of scales spans whole invocations' columns (each of a
// q8 pack's matrices but the text tower's fused q | k | v): one scale read per step along k.
@compute @workgroup_size(32)
fn main_one_scale(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) groups: vec3u) {
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
    let nb = (p.n + p.block - 1u) / p.block;
    let s = (col * 4u) / p.block;
    var c0_0 = vec4f(); var c0_1 = vec4f(); var c0_2 = vec4f(); var c0_3 = vec4f(); var c0_4 = vec4f(); var c0_5 = vec4f();
    var c1_0 = vec4f(); var c1_1 = vec4f(); var c1_2 = vec4f(); var c1_3 = vec4f(); var c1_4 = vec4f(); var c1_5 = vec4f();
    var c2_0 = vec4f(); var c2_1 = vec4f(); var c2_2 = vec4f(); var c2_3 = vec4f(); var c2_4 = vec4f(); var c2_5 = vec4f();
    var c3_0 = vec4f(); var c3_1 = vec4f(); var c3_2 = vec4f(); var c3_3 = vec4f(); var c3_4 = vec4f(); var c3_5 = vec4f();
    var c4_0 = vec4f(); var c4_1 = vec4f(); var c4_2 = vec4f(); var c4_3 = vec4f(); var c4_4 = vec4f(); var c4_5 = vec4f();
    var c5_0 = vec4f(); var c5_1 = vec4f(); var c5_2 = vec4f(); var c5_3 = vec4f(); var c5_4 = vec4f(); var c5_5 = vec4f();
    var c6_0 = vec4f(); var c6_1 = vec4f(); var c6_2 = vec4f(); var c6_3 = vec4f(); var c6_4 = vec4f(); var c6_5 = vec4f();
    var c7_0 = vec4f(); var c7_1 = vec4f(); var c7_2 = vec4f(); var c7_3 = vec4f(); var c7_4 = vec4f(); var c7_5 = vec4f();
    var c8_0 = vec4f(); var c8_1 = vec4f(); var c8_2 = vec4f(); var c8_3 = vec4f(); var c8_4 = vec4f(); var c8_5 = vec4f();
    var c9_0 = vec4f(); var c9_1 = vec4f(); var c9_2 = vec4f(); var c9_3 = vec4f(); var c9_4 = vec4f(); var c9_5 = vec4f();
    var c10_0 = vec4f(); var c10_1 = vec4f(); var c10_2 = vec4f(); var c10_3 = vec4f(); var c10_4 = vec4f(); var c10_5 = vec4f();
    var c11_0 = vec4f(); var c11_1 = vec4f(); var c11_2 = vec4f(); var c11_3 = vec4f(); var c11_4 = vec4f(); var c11_5 = vec4f();
    var c12_0 = vec4f(); var c12_1 = vec4f(); var c12_2 = vec4f(); var c12_3 = vec4f(); var c12_4 = vec4f(); var c12_5 = vec4f();
    var c13_0 = vec4f(); var c13_1 = vec4f(); var c13_2 = vec4f(); var c13_3 = vec4f(); var c13_4 = vec4f(); var c13_5 = vec4f();
    var c14_0 = vec4f(); var c14_1 = vec4f(); var c14_2 = vec4f(); var c14_3 = vec4f(); var c14_4 = vec4f(); var c14_5 = vec4f();
    var c15_0 = vec4f(); var c15_1 = vec4f(); var c15_2 = vec4f(); var c15_3 = vec4f(); var c15_4 = vec4f(); var c15_5 = vec4f();
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
        {
            let at = (kk * 4u + 0u) * n4;
            let scale = scales[(kk * 4u + 0u) * nb + s];
            let w0 = ints(w[at + j0]) * scale; let w1 = ints(w[at + j1]) * scale; let w2 = ints(w[at + j2]) * scale; let w3 = ints(w[at + j3]) * scale; let w4 = ints(w[at + j4]) * scale; let w5 = ints(w[at + j5]) * scale;
            c0_0 += a0.x * w0; c0_1 += a0.x * w1; c0_2 += a0.x * w2; c0_3 += a0.x * w3; c0_4 += a0.x * w4; c0_5 += a0.x * w5;
            c1_0 += a1.x * w0; c1_1 += a1.x * w1; c1_2 += a1.x * w2; c1_3 += a1.x * w3; c1_4 += a1.x * w4; c1_5 += a1.x * w5;
            c2_0 += a2.x * w0; c2_1 += a2.x * w1; c2_2 += a2.x * w2; c2_3 += a2.x * w3; c2_4 += a2.x * w4; c2_5 += a2.x * w5;
            c3_0 += a3.x * w0; c3_1 += a3.x * w1; c3_2 += a3.x * w2; c3_3 += a3.x * w3; c3_4 += a3.x * w4; c3_5 += a3.x * w5;
            c4_0 += a4.x * w0; c4_1 += a4.x * w1; c4_2 += a4.x * w2; c4_3 += a4.x * w3; c4_4 += a4.x * w4; c4_5 += a4.x * w5;
            c5_0 += a5.x * w0; c5_1 += a5.x * w1; c5_2 += a5.x * w2; c5_3 += a5.x * w3; c5_4 += a5.x * w4; c5_5 += a5.x * w5;
            c6_0 += a6.x * w0; c6_1 += a6.x * w1; c6_2 += a6.x * w2; c6_3 += a6.x * w3; c6_4 += a6.x * w4; c6_5 += a6.x * w5;
            c7_0 += a7.x * w0; c7_1 += a7.x * w1; c7_2 += a7.x * w2; c7_3 += a7.x * w3; c7_4 += a7.x * w4; c7_5 += a7.x * w5;
            c8_0 += a8.x * w0; c8_1 += a8.x * w1; c8_2 += a8.x * w2; c8_3 += a8.x * w3; c8_4 += a8.x * w4; c8_5 += a8.x * w5;
            c9_0 += a9.x * w0; c9_1 += a9.x * w1; c9_2 += a9.x * w2; c9_3 += a9.x * w3; c9_4 += a9.x * w4; c9_5 += a9.x * w5;
            c10_0 += a10.x * w0; c10_1 += a10.x * w1; c10_2 += a10.x * w2; c10_3 += a10.x * w3; c10_4 += a10.x * w4; c10_5 += a10.x * w5;
            c11_0 += a11.x * w0; c11_1 += a11.x * w1; c11_2 += a11.x * w2; c11_3 += a11.x * w3; c11_4 += a11.x * w4; c11_5 += a11.x * w5;
            c12_0 += a12.x * w0; c12_1 += a12.x * w1; c12_2 += a12.x * w2; c12_3 += a12.x * w3; c12_4 += a12.x * w4; c12_5 += a12.x * w5;
            c13_0 += a13.x * w0; c13_1 += a13.x * w1; c13_2 += a13.x * w2; c13_3 += a13.x * w3; c13_4 += a13.x * w4; c13_5 += a13.x * w5;
            c14_0 += a14.x * w0; c14_1 += a14.x * w1; c14_2 += a14.x * w2; c14_3 += a14.x * w3; c14_4 += a14.x * w4; c14_5 += a14.x * w5;
            c15_0 += a15.x * w0; c15_1 += a15.x * w1; c15_2 += a15.x * w2; c15_3 += a15.x * w3; c15_4 += a15.x * w4; c15_5 += a15.x * w5;
        }
        {
            let at = (kk * 4u + 1u) * n4;
            let scale = scales[(kk * 4u + 1u) * nb + s];
            let w0 = ints(w[at + j0]) * scale; let w1 = ints(w[at + j1]) * scale; let w2 = ints(w[at + j2]) * scale; let w3 = ints(w[at + j3]) * scale; let w4 = ints(w[at + j4]) * scale; let w5 = ints(w[at + j5]) * scale;
            c0_0 += a0.y * w0; c0_1 += a0.y * w1; c0_2 += a0.y * w2; c0_3 += a0.y * w3; c0_4 += a0.y * w4; c0_5 += a0.y * w5;
            c1_0 += a1.y * w0; c1_1 += a1.y * w1; c1_2 += a1.y * w2; c1_3 += a1.y * w3; c1_4 += a1.y * w4; c1_5 += a1.y * w5;
            c2_0 += a2.y * w0; c2_1 += a2.y * w1; c2_2 += a2.y * w2; c2_3 += a2.y * w3; c2_4 += a2.y * w4; c2_5 += a2.y * w5;
            c3_0 += a3.y * w0; c3_1 += a3.y * w1; c3_2 += a3.y * w2; c3_3 += a3.y * w3; c3_4 += a3.y * w4; c3_5 += a3.y * w5;
            c4_0 += a4.y * w0; c4_1 += a4.y * w1; c4_2 += a4.y * w2; c4_3 += a4.y * w3; c4_4 += a4.y * w4; c4_5 += a4.y * w5;
            c5_0 += a5.y * w0; c5_1 += a5.y * w1; c5_2 += a5.y * w2; c5_3 += a5.y * w3; c5_4 += a5.y * w4; c5_5 += a5.y * w5;
            c6_0 += a6.y * w0; c6_1 += a6.y * w1; c6_2 += a6.y * w2; c6_3 += a6.y * w3; c6_4 += a6.y * w4; c6_5 += a6.y * w5;
            c7_0 += a7.y * w0; c7_1 += a7.y * w1; c7_2 += a7.y * w2; c7_3 += a7.y * w3; c7_4 += a7.y * w4; c7_5 += a7.y * w5;
            c8_0 += a8.y * w0; c8_1 += a8.y * w1; c8_2 += a8.y * w2; c8_3 += a8.y * w3; c8_4 += a8.y * w4; c8_5 += a8.y * w5;
            c9_0 += a9.y * w0; c9_1 += a9.y * w1; c9_2 += a9.y * w2; c9_3 += a9.y * w3; c9_4 += a9.y * w4; c9_5 += a9.y * w5;
            c10_0 += a10.y * w0; c10_1 += a10.y * w1; c10_2 += a10.y * w2; c10_3 += a10.y * w3; c10_4 += a10.y * w4; c10_5 += a10.y * w5;
            c11_0 += a11.y * w0; c11_1 += a11.y * w1; c11_2 += a11.y * w2; c11_3 += a11.y * w3; c11_4 += a11.y * w4; c11_5 += a11.y * w5;
            c12_0 += a12.y * w0; c12_1 += a12.y * w1; c12_2 += a12.y * w2; c12_3 += a12.y * w3; c12_4 += a12.y * w4; c12_5 += a12.y * w5;
            c13_0 += a13.y * w0; c13_1 += a13.y * w1; c13_2 += a13.y * w2; c13_3 += a13.y * w3; c13_4 += a13.y * w4; c13_5 += a13.y * w5;
            c14_0 += a14.y * w0; c14_1 += a14.y * w1; c14_2 += a14.y * w2; c14_3 += a14.y * w3; c14_4 += a14.y * w4; c14_5 += a14.y * w5;
            c15_0 += a15.y * w0; c15_1 += a15.y * w1; c15_2 += a15.y * w2; c15_3 += a15.y * w3; c15_4 += a15.y * w4; c15_5 += a15.y * w5;
        }
        {
            let at = (kk * 4u + 2u) * n4;
            let scale = scales[(kk * 4u + 2u) * nb + s];
            let w0 = ints(w[at + j0]) * scale; let w1 = ints(w[at + j1]) * scale; let w2 = ints(w[at + j2]) * scale; let w3 = ints(w[at + j3]) * scale; let w4 = ints(w[at + j4]) * scale; let w5 = ints(w[at + j5]) * scale;
            c0_0 += a0.z * w0; c0_1 += a0.z * w1; c0_2 += a0.z * w2; c0_3 += a0.z * w3; c0_4 += a0.z * w4; c0_5 += a0.z * w5;
            c1_0 += a1.z * w0; c1_1 += a1.z * w1; c1_2 += a1.z * w2; c1_3 += a1.z * w3; c1_4 += a1.z * w4; c1_5 += a1.z * w5;
            c2_0 += a2.z * w0; c2_1 += a2.z * w1; c2_2 += a2.z * w2; c2_3 += a2.z * w3; c2_4 += a2.z * w4; c2_5 += a2.z * w5;
            c3_0 += a3.z * w0; c3_1 += a3.z * w1; c3_2 += a3.z * w2; c3_3 += a3.z * w3; c3_4 += a3.z * w4; c3_5 += a3.z * w5;
            c4_0 += a4.z * w0; c4_1 += a4.z * w1; c4_2 += a4.z * w2; c4_3 += a4.z * w3; c4_4 += a4.z * w4; c4_5 += a4.z * w5;
            c5_0 += a5.z * w0; c5_1 += a5.z * w1; c5_2 += a5.z * w2; c5_3 += a5.z * w3; c5_4 += a5.z * w4; c5_5 += a5.z * w5;
            c6_0 += a6.z * w0; c6_1 += a6.z * w1; c6_2 += a6.z * w2; c6_3 += a6.z * w3; c6_4 += a6.z * w4; c6_5 += a6.z * w5;
            c7_0 += a7.z * w0; c7_1 += a7.z * w1; c7_2 += a7.z * w2; c7_3 += a7.z * w3; c7_4 += a7.z * w4; c7_5 += a7.z * w5;
            c8_0 += a8.z * w0; c8_1 += a8.z * w1; c8_2 += a8.z * w2; c8_3 += a8.z * w3; c8_4 += a8.z * w4; c8_5 += a8.z * w5;
            c9_0 += a9.z * w0; c9_1 += a9.z * w1; c9_2 += a9.z * w2; c9_3 += a9.z * w3; c9_4 += a9.z * w4; c9_5 += a9.z * w5;
            c10_0 += a10.z * w0; c10_1 += a10.z * w1; c10_2 += a10.z * w2; c10_3 += a10.z * w3; c10_4 += a10.z * w4; c10_5 += a10.z * w5;
            c11_0 += a11.z * w0; c11_1 += a11.z * w1; c11_2 += a11.z * w2; c11_3 += a11.z * w3; c11_4 += a11.z * w4; c11_5 += a11.z * w5;
            c12_0 += a12.z * w0; c12_1 += a12.z * w1; c12_2 += a12.z * w2; c12_3 += a12.z * w3; c12_4 += a12.z * w4; c12_5 += a12.z * w5;
            c13_0 += a13.z * w0; c13_1 += a13.z * w1; c13_2 += a13.z * w2; c13_3 += a13.z * w3; c13_4 += a13.z * w4; c13_5 += a13.z * w5;
            c14_0 += a14.z * w0; c14_1 += a14.z * w1; c14_2 += a14.z * w2; c14_3 += a14.z * w3; c14_4 += a14.z * w4; c14_5 += a14.z * w5;
            c15_0 += a15.z * w0; c15_1 += a15.z * w1; c15_2 += a15.z * w2; c15_3 += a15.z * w3; c15_4 += a15.z * w4; c15_5 += a15.z * w5;
        }
        {
            let at = (kk * 4u + 3u) * n4;
            let scale = scales[(kk * 4u + 3u) * nb + s];
            let w0 = ints(w[at + j0]) * scale; let w1 = ints(w[at + j1]) * scale; let w2 = ints(w[at + j2]) * scale; let w3 = ints(w[at + j3]) * scale; let w4 = ints(w[at + j4]) * scale; let w5 = ints(w[at + j5]) * scale;
            c0_0 += a0.w * w0; c0_1 += a0.w * w1; c0_2 += a0.w * w2; c0_3 += a0.w * w3; c0_4 += a0.w * w4; c0_5 += a0.w * w5;
            c1_0 += a1.w * w0; c1_1 += a1.w * w1; c1_2 += a1.w * w2; c1_3 += a1.w * w3; c1_4 += a1.w * w4; c1_5 += a1.w * w5;
            c2_0 += a2.w * w0; c2_1 += a2.w * w1; c2_2 += a2.w * w2; c2_3 += a2.w * w3; c2_4 += a2.w * w4; c2_5 += a2.w * w5;
            c3_0 += a3.w * w0; c3_1 += a3.w * w1; c3_2 += a3.w * w2; c3_3 += a3.w * w3; c3_4 += a3.w * w4; c3_5 += a3.w * w5;
            c4_0 += a4.w * w0; c4_1 += a4.w * w1; c4_2 += a4.w * w2; c4_3 += a4.w * w3; c4_4 += a4.w * w4; c4_5 += a4.w * w5;
            c5_0 += a5.w * w0; c5_1 += a5.w * w1; c5_2 += a5.w * w2; c5_3 += a5.w * w3; c5_4 += a5.w * w4; c5_5 += a5.w * w5;
            c6_0 += a6.w * w0; c6_1 += a6.w * w1; c6_2 += a6.w * w2; c6_3 += a6.w * w3; c6_4 += a6.w * w4; c6_5 += a6.w * w5;
            c7_0 += a7.w * w0; c7_1 += a7.w * w1; c7_2 += a7.w * w2; c7_3 += a7.w * w3; c7_4 += a7.w * w4; c7_5 += a7.w * w5;
            c8_0 += a8.w * w0; c8_1 += a8.w * w1; c8_2 += a8.w * w2; c8_3 += a8.w * w3; c8_4 += a8.w * w4; c8_5 += a8.w * w5;
            c9_0 += a9.w * w0; c9_1 += a9.w * w1; c9_2 += a9.w * w2; c9_3 += a9.w * w3; c9_4 += a9.w * w4; c9_5 += a9.w * w5;
            c10_0 += a10.w * w0; c10_1 += a10.w * w1; c10_2 += a10.w * w2; c10_3 += a10.w * w3; c10_4 += a10.w * w4; c10_5 += a10.w * w5;
            c11_0 += a11.w * w0; c11_1 += a11.w * w1; c11_2 += a11.w * w2; c11_3 += a11.w * w3; c11_4 += a11.w * w4; c11_5 += a11.w * w5;
            c12_0 += a12.w * w0; c12_1 += a12.w * w1; c12_2 += a12.w * w2; c12_3 += a12.w * w3; c12_4 += a12.w * w4; c12_5 += a12.w * w5;
            c13_0 += a13.w * w0; c13_1 += a13.w * w1; c13_2 += a13.w * w2; c13_3 += a13.w * w3; c13_4 += a13.w * w4; c13_5 += a13.w * w5;
            c14_0 += a14.w * w0; c14_1 += a14.w * w1; c14_2 += a14.w * w2; c14_3 += a14.w * w3; c14_4 += a14.w * w4; c14_5 += a14.w * w5;
            c15_0 += a15.w * w0; c15_1 += a15.w * w1; c15_2 += a15.w * w2; c15_3 += a15.w * w3; c15_4 += a15.w * w4; c15_5 += a15.w * w5;
        }
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
