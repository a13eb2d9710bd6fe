// Activations for matmul_q8dot.wgsl: each row of a [m, k] times the weights' per-k scales
// (`s` [k]: a q8 pack's scale of each row of its [k, n] matrix, which can't factor out of a
// dot product along k), quantized to 8 bits: q = round(x * 127 / max |x|) (ties to even, as
// the CPU's int8 path rounds), four k to a word (k in byte k % 4) in `q` [m, k / 4], and the
// row's scale max |x| / 127 in `scale` [m] (0 for a zero row). One workgroup per row.
struct Params { m: u32, n: u32, k: u32, flags: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4f>;
@group(0) @binding(2) var<storage, read> s: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> q: array<u32>;
@group(0) @binding(4) var<storage, read_write> scale: array<f32>;

var<workgroup> peaks: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(num_workgroups) groups: vec3u,
        @builtin(local_invocation_index) t: u32) {
    // Rows past 65535 wrap into y; the row is the same for the whole workgroup, so every
    // invocation reaches the barriers or none does.
    let row = wg.x + wg.y * groups.x;
    if row >= p.m { return; }
    let k4 = p.k / 4u;
    var peak = 0.0;
    for (var i = t; i < k4; i += 64u) {
        let x = abs(a[row * k4 + i] * s[i]);
        peak = max(peak, max(max(x.x, x.y), max(x.z, x.w)));
    }
    peaks[t] = peak;
    workgroupBarrier();
    for (var half = 32u; half > 0u; half >>= 1u) {
        if t < half { peaks[t] = max(peaks[t], peaks[t + half]); }
        workgroupBarrier();
    }
    let top = peaks[0];
    let inv = select(0.0, 127.0 / top, top > 0.0);
    for (var i = t; i < k4; i += 64u) {
        let v = vec4i(clamp(round(a[row * k4 + i] * s[i] * inv), vec4f(-127.0), vec4f(127.0)));
        let b = vec4u(bitcast<vec4u>(v) & vec4u(255u)) << vec4u(0u, 8u, 16u, 24u);
        q[row * k4 + i] = b.x | b.y | b.z | b.w;
    }
    if t == 0u { scale[row] = top / 127.0; }
}
