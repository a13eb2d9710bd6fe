//! The executors a part of an engine can run on, and tensors to and from the host for them.

use std::sync::Arc;

use burn::tensor::{Device, Tensor};

use super::cpu::Precision;
use super::gpu::Gpu;
use crate::Error;

/// Where one part of an engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Burn,
    Cpu,
    Gpu,
}

/// The executor a build chose (a part whose shape its kernels lack falls back to burn's ops).
#[derive(Clone, Debug)]
pub(super) enum Executor {
    Burn,
    Cpu(Precision),
    Gpu(Arc<Gpu>),
}

/// Bytes `module`'s parameters (all f32) hold in GPU memory: none on flex, the host.
pub(super) fn param_bytes<M: burn::module::Module>(module: &M) -> u64 {
    let on_host = module.devices().iter().all(|d| *d == Device::flex());
    if on_host {
        0
    } else {
        4 * module.num_params() as u64
    }
}

/// Bytes `t` (f32) holds in GPU memory: none on flex.
pub(super) fn tensor_bytes<const D: usize>(t: &Tensor<D>) -> u64 {
    let on_host = t.device() == Device::flex();
    if on_host {
        0
    } else {
        4 * t.shape().num_elements() as u64
    }
}

/// A tensor's values on the host, read synchronously: on flex (in wasm too), or on any device
/// natively.
pub(crate) fn host_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, Error> {
    let err = |e: &dyn std::fmt::Debug| Error::Input(format!("reading a tensor back: {e:?}"));
    t.try_into_data()
        .map_err(|e| err(&e))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| err(&e))
}

/// A tensor's values on the host, awaited (the browser cannot block on a GPU read).
pub async fn read_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, Error> {
    let err = |e: &dyn std::fmt::Debug| Error::Input(format!("reading a tensor back: {e:?}"));
    let data = t.into_data_async().await.map_err(|e| err(&e))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| err(&e))
}
