// out[m, n] = act(a[m, k] · w[k, n] + bias[n]) (+ out[m, n] with RESIDUAL), all row-major.
// Each invocation computes an 8 x 16 block in registers, with no workgroup memory and no
// barriers, and its inner loop is unrolled by hand with named vector components: on a CPU
// implementation of WebGPU (SwiftShader) a shared-memory tiled kernel ran 6x slower (barriers
// are coroutine switches there), and `a[j]` with a loop index j 1.6x slower than `a.x`.
// Needs k % 4 == 0 and n % 4 == 0; a last partial block of columns reads its last column again.

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

fn store(row: u32, col: u32, c: array<vec4f, 4>) {
    if row >= p.m { return; }
    let n4 = p.n / 4u;
    for (var v = 0u; v < 4u; v++) {
        if col + v >= n4 { return; }
        let at = row * n4 + col + v;
        var value = activate(c[v] + bias[col + v], p.flags & 15u);
        if (p.flags & RESIDUAL) != 0u { value += out[at]; }
        out[at] = value;
    }
}

@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) g: vec3u) {
    let n4 = p.n / 4u;
    let k4 = p.k / 4u;
    let col = g.x * 4u;
    let m0 = g.y * 8u;
    if col >= n4 || m0 >= p.m { return; }
    // Rows and columns past the end read the last one again; their results are not stored.
    let last = p.m - 1u;
    let r0 = min(m0 + 0u, last) * k4;
    let r1 = min(m0 + 1u, last) * k4;
    let r2 = min(m0 + 2u, last) * k4;
    let r3 = min(m0 + 3u, last) * k4;
    let r4 = min(m0 + 4u, last) * k4;
    let r5 = min(m0 + 5u, last) * k4;
    let r6 = min(m0 + 6u, last) * k4;
    let r7 = min(m0 + 7u, last) * k4;
    let n0 = min(col + 0u, n4 - 1u);
    let n1 = min(col + 1u, n4 - 1u);
    let n2 = min(col + 2u, n4 - 1u);
    let n3 = min(col + 3u, n4 - 1u);
    var c00 = vec4f(); var c01 = vec4f(); var c02 = vec4f(); var c03 = vec4f();
    var c10 = vec4f(); var c11 = vec4f(); var c12 = vec4f(); var c13 = vec4f();
    var c20 = vec4f(); var c21 = vec4f(); var c22 = vec4f(); var c23 = vec4f();
    var c30 = vec4f(); var c31 = vec4f(); var c32 = vec4f(); var c33 = vec4f();
    var c40 = vec4f(); var c41 = vec4f(); var c42 = vec4f(); var c43 = vec4f();
    var c50 = vec4f(); var c51 = vec4f(); var c52 = vec4f(); var c53 = vec4f();
    var c60 = vec4f(); var c61 = vec4f(); var c62 = vec4f(); var c63 = vec4f();
    var c70 = vec4f(); var c71 = vec4f(); var c72 = vec4f(); var c73 = vec4f();
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
            let w0 = w[at + n0]; let w1 = w[at + n1]; let w2 = w[at + n2]; let w3 = w[at + n3];
            c00 += a0.x * w0; c01 += a0.x * w1; c02 += a0.x * w2; c03 += a0.x * w3;
            c10 += a1.x * w0; c11 += a1.x * w1; c12 += a1.x * w2; c13 += a1.x * w3;
            c20 += a2.x * w0; c21 += a2.x * w1; c22 += a2.x * w2; c23 += a2.x * w3;
            c30 += a3.x * w0; c31 += a3.x * w1; c32 += a3.x * w2; c33 += a3.x * w3;
            c40 += a4.x * w0; c41 += a4.x * w1; c42 += a4.x * w2; c43 += a4.x * w3;
            c50 += a5.x * w0; c51 += a5.x * w1; c52 += a5.x * w2; c53 += a5.x * w3;
            c60 += a6.x * w0; c61 += a6.x * w1; c62 += a6.x * w2; c63 += a6.x * w3;
            c70 += a7.x * w0; c71 += a7.x * w1; c72 += a7.x * w2; c73 += a7.x * w3;
        }
        {
            let at = (kk * 4u + 1u) * n4;
            let w0 = w[at + n0]; let w1 = w[at + n1]; let w2 = w[at + n2]; let w3 = w[at + n3];
            c00 += a0.y * w0; c01 += a0.y * w1; c02 += a0.y * w2; c03 += a0.y * w3;
            c10 += a1.y * w0; c11 += a1.y * w1; c12 += a1.y * w2; c13 += a1.y * w3;
            c20 += a2.y * w0; c21 += a2.y * w1; c22 += a2.y * w2; c23 += a2.y * w3;
            c30 += a3.y * w0; c31 += a3.y * w1; c32 += a3.y * w2; c33 += a3.y * w3;
            c40 += a4.y * w0; c41 += a4.y * w1; c42 += a4.y * w2; c43 += a4.y * w3;
            c50 += a5.y * w0; c51 += a5.y * w1; c52 += a5.y * w2; c53 += a5.y * w3;
            c60 += a6.y * w0; c61 += a6.y * w1; c62 += a6.y * w2; c63 += a6.y * w3;
            c70 += a7.y * w0; c71 += a7.y * w1; c72 += a7.y * w2; c73 += a7.y * w3;
        }
        {
            let at = (kk * 4u + 2u) * n4;
            let w0 = w[at + n0]; let w1 = w[at + n1]; let w2 = w[at + n2]; let w3 = w[at + n3];
            c00 += a0.z * w0; c01 += a0.z * w1; c02 += a0.z * w2; c03 += a0.z * w3;
            c10 += a1.z * w0; c11 += a1.z * w1; c12 += a1.z * w2; c13 += a1.z * w3;
            c20 += a2.z * w0; c21 += a2.z * w1; c22 += a2.z * w2; c23 += a2.z * w3;
            c30 += a3.z * w0; c31 += a3.z * w1; c32 += a3.z * w2; c33 += a3.z * w3;
            c40 += a4.z * w0; c41 += a4.z * w1; c42 += a4.z * w2; c43 += a4.z * w3;
            c50 += a5.z * w0; c51 += a5.z * w1; c52 += a5.z * w2; c53 += a5.z * w3;
            c60 += a6.z * w0; c61 += a6.z * w1; c62 += a6.z * w2; c63 += a6.z * w3;
            c70 += a7.z * w0; c71 += a7.z * w1; c72 += a7.z * w2; c73 += a7.z * w3;
        }
        {
            let at = (kk * 4u + 3u) * n4;
            let w0 = w[at + n0]; let w1 = w[at + n1]; let w2 = w[at + n2]; let w3 = w[at + n3];
            c00 += a0.w * w0; c01 += a0.w * w1; c02 += a0.w * w2; c03 += a0.w * w3;
            c10 += a1.w * w0; c11 += a1.w * w1; c12 += a1.w * w2; c13 += a1.w * w3;
            c20 += a2.w * w0; c21 += a2.w * w1; c22 += a2.w * w2; c23 += a2.w * w3;
            c30 += a3.w * w0; c31 += a3.w * w1; c32 += a3.w * w2; c33 += a3.w * w3;
            c40 += a4.w * w0; c41 += a4.w * w1; c42 += a4.w * w2; c43 += a4.w * w3;
            c50 += a5.w * w0; c51 += a5.w * w1; c52 += a5.w * w2; c53 += a5.w * w3;
            c60 += a6.w * w0; c61 += a6.w * w1; c62 += a6.w * w2; c63 += a6.w * w3;
            c70 += a7.w * w0; c71 += a7.w * w1; c72 += a7.w * w2; c73 += a7.w * w3;
        }
    }
    store(m0 + 0u, col, array(c00, c01, c02, c03));
    store(m0 + 1u, col, array(c10, c11, c12, c13));
    store(m0 + 2u, col, array(c20, c21, c22, c23));
    store(m0 + 3u, col, array(c30, c31, c32, c33));
    store(m0 + 4u, col, array(c40, c41, c42, c43));
    store(m0 + 5u, col, array(c50, c51, c52, c53));
    store(m0 + 6u, col, array(c60, c61, c62, c63));
    store(m0 + 7u, col, array(c70, c71, c72, c73));
}
