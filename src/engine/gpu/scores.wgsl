// Attention, step 1 of 3: scaled scores s[b, head, i, j] = scale * q_i · k_j from the fused
// projections qkv [batch * seq, 3 * hidden] (q | k | v, heads side by side in each), rows padded
// to `cols` (a multiple of 8) keys. Keys past the end, or after the query when causal, get
// -3e38 (exp gives 0). Each invocation a 4 x 8 block of queries x keys, as the matmul kernel.
// HD4 (head_dim / 4) is filled in when the pipeline is built.

struct Params { seq: u32, hidden: u32, causal: u32, scale: f32, cols: u32, heads: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> s: array<vec4f>;

const HD4: u32 = {HD4}u;
const MASKED: f32 = -3.0e38;

fn masked(i: u32, j: u32) -> bool {
    return j >= p.seq || (p.causal != 0u && j > i);
}

fn put(row: u32, i: u32, j0: u32, a: vec4f, b: vec4f) {
    if i >= p.seq { return; }
    var out_a = a * p.scale;
    var out_b = b * p.scale;
    for (var c = 0u; c < 4u; c++) {
        if masked(i, j0 + c) { out_a[c] = MASKED; }
        if masked(i, j0 + 4u + c) { out_b[c] = MASKED; }
    }
    let at = row * (p.cols / 4u) + j0 / 4u;
    s[at] = out_a;
    s[at + 1u] = out_b;
}

@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) g: vec3u) {
    let j0 = g.x * 8u;
    let i0 = g.y * 4u;
    if j0 >= p.cols || i0 >= p.seq { return; }
    let batch = g.z / p.heads;
    let head = g.z % p.heads;
    let first = batch * p.seq;
    let last = p.seq - 1u;
    let h4 = p.hidden / 4u;
    let stride = 3u * h4;
    let row0 = g.z * p.seq + i0;
    let q_at0 = (first + min(i0 + 0u, last)) * stride + head * HD4;
    let q_at1 = (first + min(i0 + 1u, last)) * stride + head * HD4;
    let q_at2 = (first + min(i0 + 2u, last)) * stride + head * HD4;
    let q_at3 = (first + min(i0 + 3u, last)) * stride + head * HD4;
    let k_at0 = (first + min(j0 + 0u, last)) * stride + h4 + head * HD4;
    let k_at1 = (first + min(j0 + 1u, last)) * stride + h4 + head * HD4;
    let k_at2 = (first + min(j0 + 2u, last)) * stride + h4 + head * HD4;
    let k_at3 = (first + min(j0 + 3u, last)) * stride + h4 + head * HD4;
    let k_at4 = (first + min(j0 + 4u, last)) * stride + h4 + head * HD4;
    let k_at5 = (first + min(j0 + 5u, last)) * stride + h4 + head * HD4;
    let k_at6 = (first + min(j0 + 6u, last)) * stride + h4 + head * HD4;
    let k_at7 = (first + min(j0 + 7u, last)) * stride + h4 + head * HD4;
    var s0a = vec4f(); var s0b = vec4f();
    var s1a = vec4f(); var s1b = vec4f();
    var s2a = vec4f(); var s2b = vec4f();
    var s3a = vec4f(); var s3b = vec4f();
    for (var t = 0u; t < HD4; t++) {
        let q0 = qkv[q_at0 + t];
        let q1 = qkv[q_at1 + t];
        let q2 = qkv[q_at2 + t];
        let q3 = qkv[q_at3 + t];
        let k0 = qkv[k_at0 + t];
        let k1 = qkv[k_at1 + t];
        let k2 = qkv[k_at2 + t];
        let k3 = qkv[k_at3 + t];
        let k4 = qkv[k_at4 + t];
        let k5 = qkv[k_at5 + t];
        let k6 = qkv[k_at6 + t];
        let k7 = qkv[k_at7 + t];
        s0a += vec4f(dot(q0, k0), dot(q0, k1), dot(q0, k2), dot(q0, k3));
        s0b += vec4f(dot(q0, k4), dot(q0, k5), dot(q0, k6), dot(q0, k7));
        s1a += vec4f(dot(q1, k0), dot(q1, k1), dot(q1, k2), dot(q1, k3));
        s1b += vec4f(dot(q1, k4), dot(q1, k5), dot(q1, k6), dot(q1, k7));
        s2a += vec4f(dot(q2, k0), dot(q2, k1), dot(q2, k2), dot(q2, k3));
        s2b += vec4f(dot(q2, k4), dot(q2, k5), dot(q2, k6), dot(q2, k7));
        s3a += vec4f(dot(q3, k0), dot(q3, k1), dot(q3, k2), dot(q3, k3));
        s3b += vec4f(dot(q3, k4), dot(q3, k5), dot(q3, k6), dot(q3, k7));
    }
    put(row0 + 0u, i0 + 0u, j0, s0a, s0b);
    put(row0 + 1u, i0 + 1u, j0, s1a, s1b);
    put(row0 + 2u, i0 + 2u, j0, s2a, s2b);
    put(row0 + 3u, i0 + 3u, j0, s3a, s3b);
}
