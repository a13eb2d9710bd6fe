// Written by tools/gen_attention_wgsl.py; edit that, not this file.
//
// Attention, step 1 of 3, as scores.wgsl computes it (the same parameters and layout), each
// invocation a 8 x 16 block of queries x keys. HD4 (head_dim / 4) is filled in when the
// pipeline is built.

struct Params { seq: u32, hidden: u32, causal: u32, scale: f32, cols: u32, heads: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> s: array<vec4f>;

const HD4: u32 = {HD4}u;
const MASKED: f32 = -3.0e38;

fn masked(i: u32, j: u32) -> bool {
    return j >= p.seq || (p.causal != 0u && j > i);
}

// Four keys' scores of query i from key j0 on; keys past the padded row are not stored.
fn put(row: u32, i: u32, j0: u32, a: vec4f) {
    if i >= p.seq || j0 >= p.cols { return; }
    var out = a * p.scale;
    for (var c = 0u; c < 4u; c++) {
        if masked(i, j0 + c) { out[c] = MASKED; }
    }
    s[row * (p.cols / 4u) + j0 / 4u] = out;
}

// One invocation per block, the key blocks numbered fastest; z: batch * heads.
@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) g: vec3u) {
    let key_blocks = (p.cols + 15u) / 16u;
    let j0 = (g.x % key_blocks) * 16u;
    let i0 = (g.x / key_blocks) * 8u;
    if i0 >= p.seq { return; }
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
    let q_at4 = (first + min(i0 + 4u, last)) * stride + head * HD4;
    let q_at5 = (first + min(i0 + 5u, last)) * stride + head * HD4;
    let q_at6 = (first + min(i0 + 6u, last)) * stride + head * HD4;
    let q_at7 = (first + min(i0 + 7u, last)) * stride + head * HD4;
    let k_at0 = (first + min(j0 + 0u, last)) * stride + h4 + head * HD4;
    let k_at1 = (first + min(j0 + 1u, last)) * stride + h4 + head * HD4;
    let k_at2 = (first + min(j0 + 2u, last)) * stride + h4 + head * HD4;
    let k_at3 = (first + min(j0 + 3u, last)) * stride + h4 + head * HD4;
    let k_at4 = (first + min(j0 + 4u, last)) * stride + h4 + head * HD4;
    let k_at5 = (first + min(j0 + 5u, last)) * stride + h4 + head * HD4;
    let k_at6 = (first + min(j0 + 6u, last)) * stride + h4 + head * HD4;
    let k_at7 = (first + min(j0 + 7u, last)) * stride + h4 + head * HD4;
    let k_at8 = (first + min(j0 + 8u, last)) * stride + h4 + head * HD4;
    let k_at9 = (first + min(j0 + 9u, last)) * stride + h4 + head * HD4;
    let k_at10 = (first + min(j0 + 10u, last)) * stride + h4 + head * HD4;
    let k_at11 = (first + min(j0 + 11u, last)) * stride + h4 + head * HD4;
    let k_at12 = (first + min(j0 + 12u, last)) * stride + h4 + head * HD4;
    let k_at13 = (first + min(j0 + 13u, last)) * stride + h4 + head * HD4;
    let k_at14 = (first + min(j0 + 14u, last)) * stride + h4 + head * HD4;
    let k_at15 = (first + min(j0 + 15u, last)) * stride + h4 + head * HD4;
    var s0_0 = vec4f(); var s0_1 = vec4f(); var s0_2 = vec4f(); var s0_3 = vec4f();
    var s1_0 = vec4f(); var s1_1 = vec4f(); var s1_2 = vec4f(); var s1_3 = vec4f();
    var s2_0 = vec4f(); var s2_1 = vec4f(); var s2_2 = vec4f(); var s2_3 = vec4f();
    var s3_0 = vec4f(); var s3_1 = vec4f(); var s3_2 = vec4f(); var s3_3 = vec4f();
    var s4_0 = vec4f(); var s4_1 = vec4f(); var s4_2 = vec4f(); var s4_3 = vec4f();
    var s5_0 = vec4f(); var s5_1 = vec4f(); var s5_2 = vec4f(); var s5_3 = vec4f();
    var s6_0 = vec4f(); var s6_1 = vec4f(); var s6_2 = vec4f(); var s6_3 = vec4f();
    var s7_0 = vec4f(); var s7_1 = vec4f(); var s7_2 = vec4f(); var s7_3 = vec4f();
    for (var t = 0u; t < HD4; t++) {
        let q0 = qkv[q_at0 + t];
        let q1 = qkv[q_at1 + t];
        let q2 = qkv[q_at2 + t];
        let q3 = qkv[q_at3 + t];
        let q4 = qkv[q_at4 + t];
        let q5 = qkv[q_at5 + t];
        let q6 = qkv[q_at6 + t];
        let q7 = qkv[q_at7 + t];
        let k0 = qkv[k_at0 + t];
        let k1 = qkv[k_at1 + t];
        let k2 = qkv[k_at2 + t];
        let k3 = qkv[k_at3 + t];
        let k4 = qkv[k_at4 + t];
        let k5 = qkv[k_at5 + t];
        let k6 = qkv[k_at6 + t];
        let k7 = qkv[k_at7 + t];
        let k8 = qkv[k_at8 + t];
        let k9 = qkv[k_at9 + t];
        let k10 = qkv[k_at10 + t];
        let k11 = qkv[k_at11 + t];
        let k12 = qkv[k_at12 + t];
        let k13 = qkv[k_at13 + t];
        let k14 = qkv[k_at14 + t];
        let k15 = qkv[k_at15 + t];
        s0_0 += vec4f(dot(q0, k0), dot(q0, k1), dot(q0, k2), dot(q0, k3)); s0_1 += vec4f(dot(q0, k4), dot(q0, k5), dot(q0, k6), dot(q0, k7)); s0_2 += vec4f(dot(q0, k8), dot(q0, k9), dot(q0, k10), dot(q0, k11)); s0_3 += vec4f(dot(q0, k12), dot(q0, k13), dot(q0, k14), dot(q0, k15));
        s1_0 += vec4f(dot(q1, k0), dot(q1, k1), dot(q1, k2), dot(q1, k3)); s1_1 += vec4f(dot(q1, k4), dot(q1, k5), dot(q1, k6), dot(q1, k7)); s1_2 += vec4f(dot(q1, k8), dot(q1, k9), dot(q1, k10), dot(q1, k11)); s1_3 += vec4f(dot(q1, k12), dot(q1, k13), dot(q1, k14), dot(q1, k15));
        s2_0 += vec4f(dot(q2, k0), dot(q2, k1), dot(q2, k2), dot(q2, k3)); s2_1 += vec4f(dot(q2, k4), dot(q2, k5), dot(q2, k6), dot(q2, k7)); s2_2 += vec4f(dot(q2, k8), dot(q2, k9), dot(q2, k10), dot(q2, k11)); s2_3 += vec4f(dot(q2, k12), dot(q2, k13), dot(q2, k14), dot(q2, k15));
        s3_0 += vec4f(dot(q3, k0), dot(q3, k1), dot(q3, k2), dot(q3, k3)); s3_1 += vec4f(dot(q3, k4), dot(q3, k5), dot(q3, k6), dot(q3, k7)); s3_2 += vec4f(dot(q3, k8), dot(q3, k9), dot(q3, k10), dot(q3, k11)); s3_3 += vec4f(dot(q3, k12), dot(q3, k13), dot(q3, k14), dot(q3, k15));
        s4_0 += vec4f(dot(q4, k0), dot(q4, k1), dot(q4, k2), dot(q4, k3)); s4_1 += vec4f(dot(q4, k4), dot(q4, k5), dot(q4, k6), dot(q4, k7)); s4_2 += vec4f(dot(q4, k8), dot(q4, k9), dot(q4, k10), dot(q4, k11)); s4_3 += vec4f(dot(q4, k12), dot(q4, k13), dot(q4, k14), dot(q4, k15));
        s5_0 += vec4f(dot(q5, k0), dot(q5, k1), dot(q5, k2), dot(q5, k3)); s5_1 += vec4f(dot(q5, k4), dot(q5, k5), dot(q5, k6), dot(q5, k7)); s5_2 += vec4f(dot(q5, k8), dot(q5, k9), dot(q5, k10), dot(q5, k11)); s5_3 += vec4f(dot(q5, k12), dot(q5, k13), dot(q5, k14), dot(q5, k15));
        s6_0 += vec4f(dot(q6, k0), dot(q6, k1), dot(q6, k2), dot(q6, k3)); s6_1 += vec4f(dot(q6, k4), dot(q6, k5), dot(q6, k6), dot(q6, k7)); s6_2 += vec4f(dot(q6, k8), dot(q6, k9), dot(q6, k10), dot(q6, k11)); s6_3 += vec4f(dot(q6, k12), dot(q6, k13), dot(q6, k14), dot(q6, k15));
        s7_0 += vec4f(dot(q7, k0), dot(q7, k1), dot(q7, k2), dot(q7, k3)); s7_1 += vec4f(dot(q7, k4), dot(q7, k5), dot(q7, k6), dot(q7, k7)); s7_2 += vec4f(dot(q7, k8), dot(q7, k9), dot(q7, k10), dot(q7, k11)); s7_3 += vec4f(dot(q7, k12), dot(q7, k13), dot(q7, k14), dot(q7, k15));
    }
    put(row0 + 0u, i0 + 0u, j0 + 0u, s0_0); put(row0 + 0u, i0 + 0u, j0 + 4u, s0_1); put(row0 + 0u, i0 + 0u, j0 + 8u, s0_2); put(row0 + 0u, i0 + 0u, j0 + 12u, s0_3);
    put(row0 + 1u, i0 + 1u, j0 + 0u, s1_0); put(row0 + 1u, i0 + 1u, j0 + 4u, s1_1); put(row0 + 1u, i0 + 1u, j0 + 8u, s1_2); put(row0 + 1u, i0 + 1u, j0 + 12u, s1_3);
    put(row0 + 2u, i0 + 2u, j0 + 0u, s2_0); put(row0 + 2u, i0 + 2u, j0 + 4u, s2_1); put(row0 + 2u, i0 + 2u, j0 + 8u, s2_2); put(row0 + 2u, i0 + 2u, j0 + 12u, s2_3);
    put(row0 + 3u, i0 + 3u, j0 + 0u, s3_0); put(row0 + 3u, i0 + 3u, j0 + 4u, s3_1); put(row0 + 3u, i0 + 3u, j0 + 8u, s3_2); put(row0 + 3u, i0 + 3u, j0 + 12u, s3_3);
    put(row0 + 4u, i0 + 4u, j0 + 0u, s4_0); put(row0 + 4u, i0 + 4u, j0 + 4u, s4_1); put(row0 + 4u, i0 + 4u, j0 + 8u, s4_2); put(row0 + 4u, i0 + 4u, j0 + 12u, s4_3);
    put(row0 + 5u, i0 + 5u, j0 + 0u, s5_0); put(row0 + 5u, i0 + 5u, j0 + 4u, s5_1); put(row0 + 5u, i0 + 5u, j0 + 8u, s5_2); put(row0 + 5u, i0 + 5u, j0 + 12u, s5_3);
    put(row0 + 6u, i0 + 6u, j0 + 0u, s6_0); put(row0 + 6u, i0 + 6u, j0 + 4u, s6_1); put(row0 + 6u, i0 + 6u, j0 + 8u, s6_2); put(row0 + 6u, i0 + 6u, j0 + 12u, s6_3);
    put(row0 + 7u, i0 + 7u, j0 + 0u, s7_0); put(row0 + 7u, i0 + 7u, j0 + 4u, s7_1); put(row0 + 7u, i0 + 7u, j0 + 8u, s7_2); put(row0 + 7u, i0 + 7u, j0 + 12u, s7_3);
}
