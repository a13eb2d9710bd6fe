enable f16;

// Written by tools/gen_matmul_wgsl.py; edit that, not this file.
//
// out[m, n] = act(a[m, k] · w[k, n] + bias[n]) (+ out[m, n] with RESIDUAL), all row-major, as
// matmul.wgsl computes it, tiled for real GPUs: a 16 x 16 workgroup per 64 x 64 block of the
// output, 4 x 4 outputs per invocation, A and w staged in workgroup memory 16 deep along k.
// Needs k % 4 == 0 and n % 4 == 0 (4-bit weights: n % 8 == 0; blocks a multiple of 4); rows
// and columns past the end read the last one again, and their results are not stored.
//
// w: f16 [k, n] as an f16 pack stores it (`shader-f16`), multiplied by the activations rounded to
// f16; every four products summed in f16, the sums accumulated in f32.
struct Params { m: u32, n: u32, k: u32, flags: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4f>;
@group(0) @binding(2) var<storage, read> w: array<vec4h>;
@group(0) @binding(3) var<storage, read> bias: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4f>;

fn w_vec(k: u32, j: u32) -> vec4h {
    return w[k * (p.n / 4u) + j];
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

fn store_1(row: u32, col: u32, c: array<vec4f, 1>) {
    if row >= p.m { return; }
    let n4 = p.n / 4u;
    for (var v = 0u; v < 1u; v++) {
        if col + v >= n4 { return; }
        let at = row * n4 + col + v;
        var value = activate(c[v] + bias[col + v], p.flags & 15u);
        if (p.flags & RESIDUAL) != 0u { value += out[at]; }
        out[at] = value;
    }
}

var<workgroup> a_tile: array<array<vec4h, 4>, 64>;
var<workgroup> w_tile: array<array<vec4h, 16>, 16>;

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
        a_tile[t / 4u][t % 4u] = vec4h(select(vec4f(), a[a_row + min(ak, k4 - 1u)], ak < k4));
        let wk = k0 + t / 16u;
        w_tile[t / 16u][t % 16u] = select(vec4h(), w_vec(min(wk, p.k - 1u), w_col), wk < p.k);
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
            c0 += vec4f(a0.x * w0 + a0.y * w1 + a0.z * w2 + a0.w * w3);
            c1 += vec4f(a1.x * w0 + a1.y * w1 + a1.z * w2 + a1.w * w3);
            c2 += vec4f(a2.x * w0 + a2.y * w1 + a2.z * w2 + a2.w * w3);
            c3 += vec4f(a3.x * w0 + a3.y * w1 + a3.z * w2 + a3.w * w3);
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
