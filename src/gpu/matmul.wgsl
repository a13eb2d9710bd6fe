// out[m, n] = act(a[m, k] · w[k, n] + bias[n]) (+ out[m, n] with RESIDUAL), all row-major.
// Each invocation computes an 8 x 8 block in registers; no workgroup memory and no barriers:
// CPU implementations of WebGPU (SwiftShader) run barriers as coroutine switches, which made a
// shared-memory tiled kernel 6x slower there than this one (4 x 8 blocks: 10% slower).
// Needs k % 4 == 0 and n % 8 == 0.

struct Params { m: u32, n: u32, k: u32, flags: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4f>;
@group(0) @binding(2) var<storage, read> w: array<vec4f>;
@group(0) @binding(3) var<storage, read> bias: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;

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

fn store(row: u32, col: u32, c0: vec4f, c1: vec4f, b0: vec4f, b1: vec4f) {
    if row >= p.m { return; }
    let at = row * (p.n / 4u) + col;
    var v0 = activate(c0 + b0, p.flags & 15u);
    var v1 = activate(c1 + b1, p.flags & 15u);
    if (p.flags & RESIDUAL) != 0u {
        v0 += out[at];
        v1 += out[at + 1u];
    }
    out[at] = v0;
    out[at + 1u] = v1;
}

@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) g: vec3u) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let col = g.x * 2u;
    let m0 = g.y * 8u;
    if col >= n4 || m0 >= p.m { return; }
    // Rows past the end read the last row again; their results are not stored.
    let last = p.m - 1u;
    let r0 = min(m0 + 0u, last) * k4;
    let r1 = min(m0 + 1u, last) * k4;
    let r2 = min(m0 + 2u, last) * k4;
    let r3 = min(m0 + 3u, last) * k4;
    let r4 = min(m0 + 4u, last) * k4;
    let r5 = min(m0 + 5u, last) * k4;
    let r6 = min(m0 + 6u, last) * k4;
    let r7 = min(m0 + 7u, last) * k4;
    var c00 = vec4f(); var c01 = vec4f();
    var c10 = vec4f(); var c11 = vec4f();
    var c20 = vec4f(); var c21 = vec4f();
    var c30 = vec4f(); var c31 = vec4f();
    var c40 = vec4f(); var c41 = vec4f();
    var c50 = vec4f(); var c51 = vec4f();
    var c60 = vec4f(); var c61 = vec4f();
    var c70 = vec4f(); var c71 = vec4f();
    for (var kk = 0u; kk < k4; kk++) {
        let a0 = a[r0 + kk];
        let a1 = a[r1 + kk];
        let a2 = a[r2 + kk];
        let a3 = a[r3 + kk];
        let a4 = a[r4 + kk];
        let a5 = a[r5 + kk];
        let a6 = a[r6 + kk];
        let a7 = a[r7 + kk];
        for (var j = 0u; j < 4u; j++) {
            let at = (kk * 4u + j) * n4 + col;
            let w0 = w[at];
            let w1 = w[at + 1u];
            c00 += a0[j] * w0; c01 += a0[j] * w1;
            c10 += a1[j] * w0; c11 += a1[j] * w1;
            c20 += a2[j] * w0; c21 += a2[j] * w1;
            c30 += a3[j] * w0; c31 += a3[j] * w1;
            c40 += a4[j] * w0; c41 += a4[j] * w1;
            c50 += a5[j] * w0; c51 += a5[j] * w1;
            c60 += a6[j] * w0; c61 += a6[j] * w1;
            c70 += a7[j] * w0; c71 += a7[j] * w1;
        }
    }
    let b0 = bias[col];
    let b1 = bias[col + 1u];
    store(m0 + 0u, col, c00, c01, b0, b1);
    store(m0 + 1u, col, c10, c11, b0, b1);
    store(m0 + 2u, col, c20, c21, b0, b1);
    store(m0 + 3u, col, c30, c31, b0, b1);
    store(m0 + 4u, col, c40, c41, b0, b1);
    store(m0 + 5u, col, c50, c51, b0, b1);
    store(m0 + 6u, col, c60, c61, b0, b1);
    store(m0 + 7u, col, c70, c71, b0, b1);
}
