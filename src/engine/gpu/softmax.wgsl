// Attention, step 2 of 3: softmax of each score row in place (one invocation per row; the
// masked entries become 0).

struct Params { rows: u32, cols: u32, pad0: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> s: array<vec4f>;

@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) g: vec3u) {
    let row = g.x;
    if row >= p.rows { return; }
    let n = p.cols / 4u;
    let base = row * n;
    var best = vec4f(-3.0e38);
    for (var j = 0u; j < n; j++) { best = max(best, s[base + j]); }
    let top = max(max(best.x, best.y), max(best.z, best.w));
    var total = vec4f();
    for (var j = 0u; j < n; j++) {
        let e = exp(s[base + j] - top);
        s[base + j] = e;
        total += e;
    }
    let inv = 1.0 / (total.x + total.y + total.z + total.w);
    for (var j = 0u; j < n; j++) { s[base + j] *= inv; }
}
