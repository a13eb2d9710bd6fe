//! CLIPSeg (Lüddecke & Ecker, CVPR 2022) on burn: text-prompted segmentation that runs the same
//! model code natively (CLI, training) and in the browser (wasm + WebGPU).
//!
//! Layout: [`config`] (HF `config.json`), [`model`] (the network), [`weights`] (loading),
//! [`tokenizer`] and [`preprocess`] (inputs), [`segmenter`] (all of it behind one call),
//! [`cpu`] and [`gpu`] (the CPU and WebGPU inference paths of the encoder layers),
//! [`metrics`] (the seed's, CLIPSeg's and PhraseCut's evaluation numbers), `data` (PhraseCut
//! reader and synthetic generator; native only), `web` (the wasm-bindgen engine; wasm only).

pub mod config;
pub mod cpu;
#[cfg(feature = "native")]
pub mod data;
#[cfg(feature = "native")]
pub mod eval;
pub mod gpu;
pub mod metrics;
pub mod model;
pub mod npy;
pub mod preprocess;
#[cfg(feature = "native")]
pub mod report;
pub mod segmenter;
pub mod tokenizer;
#[cfg(feature = "native")]
pub mod train;
pub mod weights;

#[cfg(feature = "native")]
pub mod hub;
#[cfg(target_arch = "wasm32")]
pub mod web;

/// The burn version this crate is built on, for callers that make devices and tensors.
pub use burn;
pub use config::ClipSegConfig;
pub use model::ClipSeg;
pub use segmenter::Segmenter;

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
