// Written by tools/gen_matmul_wgsl.py; edit that, not this file.
//
// out[m, n] = act(a[m, k] · w[k, n] + bias[n]) (+ out[m, n] with RESIDUAL), all row-major, as
// matmul.wgsl computes it, tiled for real GPUs: a 16 x 16 workgroup per 64 x 64 block of the
// output, 4 x 4 outputs per invocation, A and w staged in workgroup memory 16 deep along k.
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

fn store_1(row: u32, col: u32, c: array<vec4i, 1>) {
    if row >= p.m { return; }
    let n4 = p.n / 4u;
    for (var v = 0u; v < 1u; v++) {
        if col + v >= n4 { return; }
        let at = row * n4 + col + v;
        var value = activate(vec4f(c[v]) * a_scale[row] + bias[col + v], p.flags & 15u);
        if (p.flags & RESIDUAL) != 0u { value += out[at]; }
        out[at] = value;
    }
}

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
