//! Plain matrix products on the matmul kernel: one ([`GpuLinear`]) or several back to back in
//! one submission ([`chain`]).

use super::device::{Gpu, Projection, activation_code};
use crate::Error;
use crate::config::Activation;
use crate::engine::layer::Matrix;

/// `x · w + bias` on the matmul kernel, for the matrices outside the layers: the vision
/// tower's patch embedding and the decoder's reduces.
#[derive(Debug)]
pub struct GpuLinear(Projection);

impl GpuLinear {
    /// Whether the kernel fits a [k, n] weight (it works on vectors of 4).
    pub fn supports(k: usize, n: usize) -> bool {
        k > 0 && n > 0 && k.is_multiple_of(4) && n.is_multiple_of(4)
    }

    /// Uploads `m`.
    pub fn new(gpu: &Gpu, m: &Matrix) -> Result<Self, Error> {
        let (k, n) = (m.k, m.n);
        let bias_fits = m.bias.as_ref().is_none_or(|b| b.len() == n);
        if !Self::supports(k, n) || m.w.numel() != k * n || !bias_fits {
            return Err(Error::Config(format!(
                "the GPU matmul does not fit a [{k}, {n}] weight of {} values",
                m.w.numel()
            )));
        }
        Ok(Self(Projection::new(gpu, m)))
    }

    /// Bytes its weights hold on the device.
    pub fn weight_bytes(&self) -> u64 {
        self.0.bytes()
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.0.n
    }

    /// `x` [rows, k] to `x · w` [rows, n], awaited.
    pub async fn forward(&self, gpu: &Gpu, x: &[f32], rows: usize) -> Result<Vec<f32>, Error> {
        if x.len() != rows * self.0.k {
            return Err(Error::Input(format!("input is not [{rows}, {}]", self.0.k)));
        }
        chain(gpu, &[(self, false)], x).await
    }
}

/// `x` through `steps` back to back in one submission, each step reading the values before it
/// as rows of its own `k` (so a step may fold columns into rows: the decoder's transposed
/// convolutions), with a ReLU after the steps flagged so; the last step's values, awaited.
pub async fn chain(gpu: &Gpu, steps: &[(&GpuLinear, bool)], x: &[f32]) -> Result<Vec<f32>, Error> {
    use wgpu::BufferUsages as U;
    let mut buffers = vec![gpu.storage("input", x, U::empty())];
    // Kept until submitted: a dispatch owns the scratch its bind group uses.
    let mut dispatches = Vec::with_capacity(steps.len());
    let mut len = x.len();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let pass = &mut encoder.begin_compute_pass(&Default::default());
        for (linear, relu) in steps {
            let p = &linear.0;
            if !len.is_multiple_of(p.k) {
                return Err(Error::Input(format!(
                    "{len} values are not rows of {}",
                    p.k
                )));
            }
            let rows = len / p.k;
            len = rows * p.n;
            let out = gpu.scratch("output", len, U::STORAGE | U::COPY_SRC);
            let act = if *relu {
                activation_code(Activation::Relu).unwrap_or(0)
            } else {
                0
            };
            let step_params = gpu.matmul_params(rows, p, act, false);
            let input = &buffers[buffers.len() - 1];
            let dispatch = gpu.matmul(&step_params, input, p, &out, rows);
            dispatch.record(pass);
            dispatches.push(dispatch);
            buffers.extend([step_params, out]);
        }
    }
    let staging = gpu.scratch("output", len, U::MAP_READ | U::COPY_DST);
    let last = &buffers[buffers.len() - 1];
    encoder.copy_buffer_to_buffer(last, 0, &staging, 0, (len * 4) as u64);
    gpu.queue.submit([encoder.finish()]);
    // Every buffer here is freed when this returns (GpuBuffer): a batch of prompts' head
    // holds ~100 MB.
    gpu.read(&staging, len).await
}
