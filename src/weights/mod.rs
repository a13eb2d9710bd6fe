//! Getting weights into a [`crate::model::ClipSeg`]: HF safetensors folders ([`hf`]).

pub mod hf;
