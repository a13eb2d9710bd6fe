//! Getting weights into a [`crate::model::ClipSeg`]: HF safetensors folders ([`hf`]) and our
//! one-file, optionally quantized packs ([`pack`]).

pub mod hf;
pub mod pack;
