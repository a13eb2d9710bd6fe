// Written by tools/gen_attention_wgsl.py; edit that, not this file.
//
// Attention, step 3 of 3, as pv.wgsl computes it (the same parameters and layout), each
// invocation 16 queries x 4 vec4 of the head's values (the last block of a head's vec4
// reads its last one again and does not store it). HD4 (head_dim / 4) is filled in when the
// pipeline is built.

struct Params { seq: u32, hidden: u32, causal: u32, scale: f32, cols: u32, heads: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<vec4f>;
@group(0) @binding(2) var<storage, read> s: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4f>;

const HD4: u32 = {HD4}u;

// One invocation per block, the blocks of values numbered fastest; z: batch * heads.
@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) g: vec3u) {
    let value_blocks = (HD4 + 3u) / 4u;
    let dv = (g.x % value_blocks) * 4u;
    let i0 = (g.x / value_blocks) * 16u;
    if i0 >= p.seq { return; }
    let batch = g.z / p.heads;
    let head = g.z % p.heads;
    let first = batch * p.seq;
    let last = p.seq - 1u;
    let h4 = p.hidden / 4u;
    let stride = 3u * h4;
    let n4 = p.cols / 4u;
    let row0 = g.z * p.seq + i0;
    // Queries past the end read the last one again; their results are not stored.
    let rows_left = p.seq - 1u - i0;
    let col = head * HD4;
    let v_at = 2u * h4 + col;
    let d0 = min(dv + 0u, HD4 - 1u);
    let d1 = min(dv + 1u, HD4 - 1u);
    let d2 = min(dv + 2u, HD4 - 1u);
    let d3 = min(dv + 3u, HD4 - 1u);
    let p_at0 = (row0 + min(0u, rows_left)) * n4;
    let p_at1 = (row0 + min(1u, rows_left)) * n4;
    let p_at2 = (row0 + min(2u, rows_left)) * n4;
    let p_at3 = (row0 + min(3u, rows_left)) * n4;
    let p_at4 = (row0 + min(4u, rows_left)) * n4;
    let p_at5 = (row0 + min(5u, rows_left)) * n4;
    let p_at6 = (row0 + min(6u, rows_left)) * n4;
    let p_at7 = (row0 + min(7u, rows_left)) * n4;
    let p_at8 = (row0 + min(8u, rows_left)) * n4;
    let p_at9 = (row0 + min(9u, rows_left)) * n4;
    let p_at10 = (row0 + min(10u, rows_left)) * n4;
    let p_at11 = (row0 + min(11u, rows_left)) * n4;
    let p_at12 = (row0 + min(12u, rows_left)) * n4;
    let p_at13 = (row0 + min(13u, rows_left)) * n4;
    let p_at14 = (row0 + min(14u, rows_left)) * n4;
    let p_at15 = (row0 + min(15u, rows_left)) * n4;
    var c0_0 = vec4f(); var c0_1 = vec4f(); var c0_2 = vec4f(); var c0_3 = vec4f();
    var c1_0 = vec4f(); var c1_1 = vec4f(); var c1_2 = vec4f(); var c1_3 = vec4f();
    var c2_0 = vec4f(); var c2_1 = vec4f(); var c2_2 = vec4f(); var c2_3 = vec4f();
    var c3_0 = vec4f(); var c3_1 = vec4f(); var c3_2 = vec4f(); var c3_3 = vec4f();
    var c4_0 = vec4f(); var c4_1 = vec4f(); var c4_2 = vec4f(); var c4_3 = vec4f();
    var c5_0 = vec4f(); var c5_1 = vec4f(); var c5_2 = vec4f(); var c5_3 = vec4f();
    var c6_0 = vec4f(); var c6_1 = vec4f(); var c6_2 = vec4f(); var c6_3 = vec4f();
    var c7_0 = vec4f(); var c7_1 = vec4f(); var c7_2 = vec4f(); var c7_3 = vec4f();
    var c8_0 = vec4f(); var c8_1 = vec4f(); var c8_2 = vec4f(); var c8_3 = vec4f();
    var c9_0 = vec4f(); var c9_1 = vec4f(); var c9_2 = vec4f(); var c9_3 = vec4f();
    var c10_0 = vec4f(); var c10_1 = vec4f(); var c10_2 = vec4f(); var c10_3 = vec4f();
    var c11_0 = vec4f(); var c11_1 = vec4f(); var c11_2 = vec4f(); var c11_3 = vec4f();
    var c12_0 = vec4f(); var c12_1 = vec4f(); var c12_2 = vec4f(); var c12_3 = vec4f();
    var c13_0 = vec4f(); var c13_1 = vec4f(); var c13_2 = vec4f(); var c13_3 = vec4f();
    var c14_0 = vec4f(); var c14_1 = vec4f(); var c14_2 = vec4f(); var c14_3 = vec4f();
    var c15_0 = vec4f(); var c15_1 = vec4f(); var c15_2 = vec4f(); var c15_3 = vec4f();
    for (var j4 = 0u; j4 < n4; j4++) {
        let p0 = s[p_at0 + j4];
        let p1 = s[p_at1 + j4];
        let p2 = s[p_at2 + j4];
        let p3 = s[p_at3 + j4];
        let p4 = s[p_at4 + j4];
        let p5 = s[p_at5 + j4];
        let p6 = s[p_at6 + j4];
        let p7 = s[p_at7 + j4];
        let p8 = s[p_at8 + j4];
        let p9 = s[p_at9 + j4];
        let p10 = s[p_at10 + j4];
        let p11 = s[p_at11 + j4];
        let p12 = s[p_at12 + j4];
        let p13 = s[p_at13 + j4];
        let p14 = s[p_at14 + j4];
        let p15 = s[p_at15 + j4];
        {
            // Padding keys have probability 0; they read the last value row.
            let at = (first + min(j4 * 4u + 0u, last)) * stride + v_at;
            let v0 = qkv[at + d0]; let v1 = qkv[at + d1]; let v2 = qkv[at + d2]; let v3 = qkv[at + d3];
            c0_0 += p0.x * v0; c0_1 += p0.x * v1; c0_2 += p0.x * v2; c0_3 += p0.x * v3;
            c1_0 += p1.x * v0; c1_1 += p1.x * v1; c1_2 += p1.x * v2; c1_3 += p1.x * v3;
            c2_0 += p2.x * v0; c2_1 += p2.x * v1; c2_2 += p2.x * v2; c2_3 += p2.x * v3;
            c3_0 += p3.x * v0; c3_1 += p3.x * v1; c3_2 += p3.x * v2; c3_3 += p3.x * v3;
            c4_0 += p4.x * v0; c4_1 += p4.x * v1; c4_2 += p4.x * v2; c4_3 += p4.x * v3;
            c5_0 += p5.x * v0; c5_1 += p5.x * v1; c5_2 += p5.x * v2; c5_3 += p5.x * v3;
            c6_0 += p6.x * v0; c6_1 += p6.x * v1; c6_2 += p6.x * v2; c6_3 += p6.x * v3;
            c7_0 += p7.x * v0; c7_1 += p7.x * v1; c7_2 += p7.x * v2; c7_3 += p7.x * v3;
            c8_0 += p8.x * v0; c8_1 += p8.x * v1; c8_2 += p8.x * v2; c8_3 += p8.x * v3;
            c9_0 += p9.x * v0; c9_1 += p9.x * v1; c9_2 += p9.x * v2; c9_3 += p9.x * v3;
            c10_0 += p10.x * v0; c10_1 += p10.x * v1; c10_2 += p10.x * v2; c10_3 += p10.x * v3;
            c11_0 += p11.x * v0; c11_1 += p11.x * v1; c11_2 += p11.x * v2; c11_3 += p11.x * v3;
            c12_0 += p12.x * v0; c12_1 += p12.x * v1; c12_2 += p12.x * v2; c12_3 += p12.x * v3;
            c13_0 += p13.x * v0; c13_1 += p13.x * v1; c13_2 += p13.x * v2; c13_3 += p13.x * v3;
            c14_0 += p14.x * v0; c14_1 += p14.x * v1; c14_2 += p14.x * v2; c14_3 += p14.x * v3;
            c15_0 += p15.x * v0; c15_1 += p15.x * v1; c15_2 += p15.x * v2; c15_3 += p15.x * v3;
        }
        {
            let at = (first + min(j4 * 4u + 1u, last)) * stride + v_at;
            let v0 = qkv[at + d0]; let v1 = qkv[at + d1]; let v2 = qkv[at + d2]; let v3 = qkv[at + d3];
            c0_0 += p0.y * v0; c0_1 += p0.y * v1; c0_2 += p0.y * v2; c0_3 += p0.y * v3;
            c1_0 += p1.y * v0; c1_1 += p1.y * v1; c1_2 += p1.y * v2; c1_3 += p1.y * v3;
            c2_0 += p2.y * v0; c2_1 += p2.y * v1; c2_2 += p2.y * v2; c2_3 += p2.y * v3;
            c3_0 += p3.y * v0; c3_1 += p3.y * v1; c3_2 += p3.y * v2; c3_3 += p3.y * v3;
            c4_0 += p4.y * v0; c4_1 += p4.y * v1; c4_2 += p4.y * v2; c4_3 += p4.y * v3;
            c5_0 += p5.y * v0; c5_1 += p5.y * v1; c5_2 += p5.y * v2; c5_3 += p5.y * v3;
            c6_0 += p6.y * v0; c6_1 += p6.y * v1; c6_2 += p6.y * v2; c6_3 += p6.y * v3;
            c7_0 += p7.y * v0; c7_1 += p7.y * v1; c7_2 += p7.y * v2; c7_3 += p7.y * v3;
            c8_0 += p8.y * v0; c8_1 += p8.y * v1; c8_2 += p8.y * v2; c8_3 += p8.y * v3;
            c9_0 += p9.y * v0; c9_1 += p9.y * v1; c9_2 += p9.y * v2; c9_3 += p9.y * v3;
            c10_0 += p10.y * v0; c10_1 += p10.y * v1; c10_2 += p10.y * v2; c10_3 += p10.y * v3;
            c11_0 += p11.y * v0; c11_1 += p11.y * v1; c11_2 += p11.y * v2; c11_3 += p11.y * v3;
            c12_0 += p12.y * v0; c12_1 += p12.y * v1; c12_2 += p12.y * v2; c12_3 += p12.y * v3;
            c13_0 += p13.y * v0; c13_1 += p13.y * v1; c13_2 += p13.y * v2; c13_3 += p13.y * v3;
            c14_0 += p14.y * v0; c14_1 += p14.y * v1; c14_2 += p14.y * v2; c14_3 += p14.y * v3;
            c15_0 += p15.y * v0; c15_1 += p15.y * v1; c15_2 += p15.y * v2; c15_3 += p15.y * v3;
        }
        {
            let at = (first + min(j4 * 4u + 2u, last)) * stride + v_at;
            let v0 = qkv[at + d0]; let v1 = qkv[at + d1]; let v2 = qkv[at + d2]; let v3 = qkv[at + d3];
            c0_0 += p0.z * v0; c0_1 += p0.z * v1; c0_2 += p0.z * v2; c0_3 += p0.z * v3;
            c1_0 += p1.z * v0; c1_1 += p1.z * v1; c1_2 += p1.z * v2; c1_3 += p1.z * v3;
            c2_0 += p2.z * v0; c2_1 += p2.z * v1; c2_2 += p2.z * v2; c2_3 += p2.z * v3;
            c3_0 += p3.z * v0; c3_1 += p3.z * v1; c3_2 += p3.z * v2; c3_3 += p3.z * v3;
            c4_0 += p4.z * v0; c4_1 += p4.z * v1; c4_2 += p4.z * v2; c4_3 += p4.z * v3;
            c5_0 += p5.z * v0; c5_1 += p5.z * v1; c5_2 += p5.z * v2; c5_3 += p5.z * v3;
            c6_0 += p6.z * v0; c6_1 += p6.z * v1; c6_2 += p6.z * v2; c6_3 += p6.z * v3;
            c7_0 += p7.z * v0; c7_1 += p7.z * v1; c7_2 += p7.z * v2; c7_3 += p7.z * v3;
            c8_0 += p8.z * v0; c8_1 += p8.z * v1; c8_2 += p8.z * v2; c8_3 += p8.z * v3;
            c9_0 += p9.z * v0; c9_1 += p9.z * v1; c9_2 += p9.z * v2; c9_3 += p9.z * v3;
            c10_0 += p10.z * v0; c10_1 += p10.z * v1; c10_2 += p10.z * v2; c10_3 += p10.z * v3;
            c11_0 += p11.z * v0; c11_1 += p11.z * v1; c11_2 += p11.z * v2; c11_3 += p11.z * v3;
            c12_0 += p12.z * v0; c12_1 += p12.z * v1; c12_2 += p12.z * v2; c12_3 += p12.z * v3;
            c13_0 += p13.z * v0; c13_1 += p13.z * v1; c13_2 += p13.z * v2; c13_3 += p13.z * v3;
            c14_0 += p14.z * v0; c14_1 += p14.z * v1; c14_2 += p14.z * v2; c14_3 += p14.z * v3;
            c15_0 += p15.z * v0; c15_1 += p15.z * v1; c15_2 += p15.z * v2; c15_3 += p15.z * v3;
        }
        {
            let at = (first + min(j4 * 4u + 3u, last)) * stride + v_at;
            let v0 = qkv[at + d0]; let v1 = qkv[at + d1]; let v2 = qkv[at + d2]; let v3 = qkv[at + d3];
            c0_0 += p0.w * v0; c0_1 += p0.w * v1; c0_2 += p0.w * v2; c0_3 += p0.w * v3;
            c1_0 += p1.w * v0; c1_1 += p1.w * v1; c1_2 += p1.w * v2; c1_3 += p1.w * v3;
            c2_0 += p2.w * v0; c2_1 += p2.w * v1; c2_2 += p2.w * v2; c2_3 += p2.w * v3;
            c3_0 += p3.w * v0; c3_1 += p3.w * v1; c3_2 += p3.w * v2; c3_3 += p3.w * v3;
            c4_0 += p4.w * v0; c4_1 += p4.w * v1; c4_2 += p4.w * v2; c4_3 += p4.w * v3;
            c5_0 += p5.w * v0; c5_1 += p5.w * v1; c5_2 += p5.w * v2; c5_3 += p5.w * v3;
            c6_0 += p6.w * v0; c6_1 += p6.w * v1; c6_2 += p6.w * v2; c6_3 += p6.w * v3;
            c7_0 += p7.w * v0; c7_1 += p7.w * v1; c7_2 += p7.w * v2; c7_3 += p7.w * v3;
            c8_0 += p8.w * v0; c8_1 += p8.w * v1; c8_2 += p8.w * v2; c8_3 += p8.w * v3;
            c9_0 += p9.w * v0; c9_1 += p9.w * v1; c9_2 += p9.w * v2; c9_3 += p9.w * v3;
            c10_0 += p10.w * v0; c10_1 += p10.w * v1; c10_2 += p10.w * v2; c10_3 += p10.w * v3;
            c11_0 += p11.w * v0; c11_1 += p11.w * v1; c11_2 += p11.w * v2; c11_3 += p11.w * v3;
            c12_0 += p12.w * v0; c12_1 += p12.w * v1; c12_2 += p12.w * v2; c12_3 += p12.w * v3;
            c13_0 += p13.w * v0; c13_1 += p13.w * v1; c13_2 += p13.w * v2; c13_3 += p13.w * v3;
            c14_0 += p14.w * v0; c14_1 += p14.w * v1; c14_2 += p14.w * v2; c14_3 += p14.w * v3;
            c15_0 += p15.w * v0; c15_1 += p15.w * v1; c15_2 += p15.w * v2; c15_3 += p15.w * v3;
        }
    }
    if i0 + 0u < p.seq {
        let at = (first + i0 + 0u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c0_0; }
        if dv + 1u < HD4 { out[at + d1] = c0_1; }
        if dv + 2u < HD4 { out[at + d2] = c0_2; }
        if dv + 3u < HD4 { out[at + d3] = c0_3; }
    }
    if i0 + 1u < p.seq {
        let at = (first + i0 + 1u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c1_0; }
        if dv + 1u < HD4 { out[at + d1] = c1_1; }
        if dv + 2u < HD4 { out[at + d2] = c1_2; }
        if dv + 3u < HD4 { out[at + d3] = c1_3; }
    }
    if i0 + 2u < p.seq {
        let at = (first + i0 + 2u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c2_0; }
        if dv + 1u < HD4 { out[at + d1] = c2_1; }
        if dv + 2u < HD4 { out[at + d2] = c2_2; }
        if dv + 3u < HD4 { out[at + d3] = c2_3; }
    }
    if i0 + 3u < p.seq {
        let at = (first + i0 + 3u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c3_0; }
        if dv + 1u < HD4 { out[at + d1] = c3_1; }
        if dv + 2u < HD4 { out[at + d2] = c3_2; }
        if dv + 3u < HD4 { out[at + d3] = c3_3; }
    }
    if i0 + 4u < p.seq {
        let at = (first + i0 + 4u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c4_0; }
        if dv + 1u < HD4 { out[at + d1] = c4_1; }
        if dv + 2u < HD4 { out[at + d2] = c4_2; }
        if dv + 3u < HD4 { out[at + d3] = c4_3; }
    }
    if i0 + 5u < p.seq {
        let at = (first + i0 + 5u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c5_0; }
        if dv + 1u < HD4 { out[at + d1] = c5_1; }
        if dv + 2u < HD4 { out[at + d2] = c5_2; }
        if dv + 3u < HD4 { out[at + d3] = c5_3; }
    }
    if i0 + 6u < p.seq {
        let at = (first + i0 + 6u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c6_0; }
        if dv + 1u < HD4 { out[at + d1] = c6_1; }
        if dv + 2u < HD4 { out[at + d2] = c6_2; }
        if dv + 3u < HD4 { out[at + d3] = c6_3; }
    }
    if i0 + 7u < p.seq {
        let at = (first + i0 + 7u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c7_0; }
        if dv + 1u < HD4 { out[at + d1] = c7_1; }
        if dv + 2u < HD4 { out[at + d2] = c7_2; }
        if dv + 3u < HD4 { out[at + d3] = c7_3; }
    }
    if i0 + 8u < p.seq {
        let at = (first + i0 + 8u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c8_0; }
        if dv + 1u < HD4 { out[at + d1] = c8_1; }
        if dv + 2u < HD4 { out[at + d2] = c8_2; }
        if dv + 3u < HD4 { out[at + d3] = c8_3; }
    }
    if i0 + 9u < p.seq {
        let at = (first + i0 + 9u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c9_0; }
        if dv + 1u < HD4 { out[at + d1] = c9_1; }
        if dv + 2u < HD4 { out[at + d2] = c9_2; }
        if dv + 3u < HD4 { out[at + d3] = c9_3; }
    }
    if i0 + 10u < p.seq {
        let at = (first + i0 + 10u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c10_0; }
        if dv + 1u < HD4 { out[at + d1] = c10_1; }
        if dv + 2u < HD4 { out[at + d2] = c10_2; }
        if dv + 3u < HD4 { out[at + d3] = c10_3; }
    }
    if i0 + 11u < p.seq {
        let at = (first + i0 + 11u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c11_0; }
        if dv + 1u < HD4 { out[at + d1] = c11_1; }
        if dv + 2u < HD4 { out[at + d2] = c11_2; }
        if dv + 3u < HD4 { out[at + d3] = c11_3; }
    }
    if i0 + 12u < p.seq {
        let at = (first + i0 + 12u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c12_0; }
        if dv + 1u < HD4 { out[at + d1] = c12_1; }
        if dv + 2u < HD4 { out[at + d2] = c12_2; }
        if dv + 3u < HD4 { out[at + d3] = c12_3; }
    }
    if i0 + 13u < p.seq {
        let at = (first + i0 + 13u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c13_0; }
        if dv + 1u < HD4 { out[at + d1] = c13_1; }
        if dv + 2u < HD4 { out[at + d2] = c13_2; }
        if dv + 3u < HD4 { out[at + d3] = c13_3; }
    }
    if i0 + 14u < p.seq {
        let at = (first + i0 + 14u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c14_0; }
        if dv + 1u < HD4 { out[at + d1] = c14_1; }
        if dv + 2u < HD4 { out[at + d2] = c14_2; }
        if dv + 3u < HD4 { out[at + d3] = c14_3; }
    }
    if i0 + 15u < p.seq {
        let at = (first + i0 + 15u) * h4 + col;
        if dv + 0u < HD4 { out[at + d0] = c15_0; }
        if dv + 1u < HD4 { out[at + d1] = c15_1; }
        if dv + 2u < HD4 { out[at + d2] = c15_2; }
        if dv + 3u < HD4 { out[at + d3] = c15_3; }
    }
}
