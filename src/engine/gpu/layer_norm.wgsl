// LayerNorm over the last dimension, one invocation per row (two passes, as torch: mean, then
// the mean squared deviation). Rows are few (hundreds) and short, so this is not worth
// splitting across invocations, which would need barriers.

struct Params { rows: u32, cols: u32, eps: f32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) g: vec3u) {
    let row = g.x;
    if row >= p.rows { return; }
    let base = row * p.cols;
    var sum = 0.0;
    for (var i = 0u; i < p.cols; i++) { sum += x[base + i]; }
    let mean = sum / f32(p.cols);
    var sq = 0.0;
    for (var i = 0u; i < p.cols; i++) { let d = x[base + i] - mean; sq += d * d; }
    let inv = inverseSqrt(sq / f32(p.cols) + p.eps);
    for (var i = 0u; i < p.cols; i++) {
        out[base + i] = (x[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
