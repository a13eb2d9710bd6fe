// Attention, step 3 of 3: out[b * seq + i, head | d] = sum_j p[b, head, i, j] v_j[d], the
// heads merged back side by side: [batch * seq, hidden]. Each invocation 8 queries x 4 values
// of d, unrolled as the matmul kernel. HD4 (head_dim / 4) is filled in when the pipeline is
// built.

struct Params { seq: u32, hidden: u32, causal: u32, scale: f32, cols: u32, heads: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<vec4f>;
@group(0) @binding(2) var<storage, read> s: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4f>;

const HD4: u32 = {HD4}u;

@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) g: vec3u) {
    let d4 = g.x % HD4;
    let i0 = (g.x / HD4) * 8u;
    if i0 >= p.seq { return; }
    let batch = g.z / p.heads;
    let head = g.z % p.heads;
    let first = batch * p.seq;
    let h4 = p.hidden / 4u;
    let stride = 3u * h4;
    let n4 = p.cols / 4u;
    let row0 = g.z * p.seq + i0;
    // Queries past the end read the last one again; their results are not stored.
    let rows_left = p.seq - 1u - i0;
    let col = head * HD4 + d4;
    let v_at = 2u * h4 + col;
    let last = p.seq - 1u;
    let p_at0 = (row0 + min(0u, rows_left)) * n4;
    let p_at1 = (row0 + min(1u, rows_left)) * n4;
    let p_at2 = (row0 + min(2u, rows_left)) * n4;
    let p_at3 = (row0 + min(3u, rows_left)) * n4;
    let p_at4 = (row0 + min(4u, rows_left)) * n4;
    let p_at5 = (row0 + min(5u, rows_left)) * n4;
    let p_at6 = (row0 + min(6u, rows_left)) * n4;
    let p_at7 = (row0 + min(7u, rows_left)) * n4;
    var c0 = vec4f();
    var c1 = vec4f();
    var c2 = vec4f();
    var c3 = vec4f();
    var c4 = vec4f();
    var c5 = vec4f();
    var c6 = vec4f();
    var c7 = vec4f();
    for (var j4 = 0u; j4 < n4; j4++) {
        let p0 = s[p_at0 + j4];
        let p1 = s[p_at1 + j4];
        let p2 = s[p_at2 + j4];
        let p3 = s[p_at3 + j4];
        let p4 = s[p_at4 + j4];
        let p5 = s[p_at5 + j4];
        let p6 = s[p_at6 + j4];
        let p7 = s[p_at7 + j4];
        {
            // Padding keys have probability 0; they read the last value row.
            let v = qkv[(first + min(j4 * 4u + 0u, last)) * stride + v_at];
            c0 += p0.x * v; c1 += p1.x * v; c2 += p2.x * v; c3 += p3.x * v; c4 += p4.x * v; c5 += p5.x * v; c6 += p6.x * v; c7 += p7.x * v;
        }
        {
            let v = qkv[(first + min(j4 * 4u + 1u, last)) * stride + v_at];
            c0 += p0.y * v; c1 += p1.y * v; c2 += p2.y * v; c3 += p3.y * v; c4 += p4.y * v; c5 += p5.y * v; c6 += p6.y * v; c7 += p7.y * v;
        }
        {
            let v = qkv[(first + min(j4 * 4u + 2u, last)) * stride + v_at];
            c0 += p0.z * v; c1 += p1.z * v; c2 += p2.z * v; c3 += p3.z * v; c4 += p4.z * v; c5 += p5.z * v; c6 += p6.z * v; c7 += p7.z * v;
        }
        {
            let v = qkv[(first + min(j4 * 4u + 3u, last)) * stride + v_at];
            c0 += p0.w * v; c1 += p1.w * v; c2 += p2.w * v; c3 += p3.w * v; c4 += p4.w * v; c5 += p5.w * v; c6 += p6.w * v; c7 += p7.w * v;
        }
    }
    if i0 + 0u < p.seq { out[(first + i0 + 0u) * h4 + col] = c0; }
    if i0 + 1u < p.seq { out[(first + i0 + 1u) * h4 + col] = c1; }
    if i0 + 2u < p.seq { out[(first + i0 + 2u) * h4 + col] = c2; }
    if i0 + 3u < p.seq { out[(first + i0 + 3u) * h4 + col] = c3; }
    if i0 + 4u < p.seq { out[(first + i0 + 4u) * h4 + col] = c4; }
    if i0 + 5u < p.seq { out[(first + i0 + 5u) * h4 + col] = c5; }
    if i0 + 6u < p.seq { out[(first + i0 + 6u) * h4 + col] = c6; }
    if i0 + 7u < p.seq { out[(first + i0 + 7u) * h4 + col] = c7; }
}
