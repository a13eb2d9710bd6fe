//! CLIPSeg (Lüddecke & Ecker, CVPR 2022) on burn: text-prompted segmentation that runs the same
//! model code natively (CLI, training) and in the browser (wasm + WebGPU).
//!
//! Layout, in the order a prompt travels: [`config`] (HF `config.json`), [`tokenizer`] and
//! [`preprocess`] (inputs), [`model`] (the network in burn, HF's math: trainable, the
//! reference), [`engine`] (inference on the CPU and WebGPU kernels), [`postprocess`] (logits to
//! masks), [`compose`] (masks as users export them), [`example`] (image prompts from a marked
//! region), [`segmenter`] (all of it behind one call), [`weights`] (HF folders and packs),
//! [`metrics`] (the seed's, CLIPSeg's and PhraseCut's evaluation numbers). Native only
//! ([`native`]): data, evaluation, training, reports, downloads. Wasm only: `web` (the
//! wasm-bindgen engine).

pub mod compose;
pub mod config;
pub mod counting_alloc;
pub mod engine;
pub mod example;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod postprocess;
pub mod preprocess;
pub mod segmenter;
pub mod tokenizer;
pub mod weights;

#[cfg(feature = "native")]
pub mod native;
#[cfg(feature = "native")]
pub use native::{data, eval, hub, report, train};
#[cfg(target_arch = "wasm32")]
pub mod web;

/// The burn version this crate is built on, for callers that make devices and tensors.
pub use burn;
pub use config::ClipSegConfig;
pub use model::ClipSeg;
pub use segmenter::{Checkpoint, Prompt, Segmenter};

/// Every failure a user can cause, as one line of text.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Weights(String),
    #[error("{0}")]
    Tokenizer(String),
    #[error("{0}")]
    Image(String),
    #[error("{0}")]
    Input(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

impl From<preprocess::PreprocessError> for Error {
    fn from(e: preprocess::PreprocessError) -> Self {
        Error::Image(e.to_string())
    }
}
