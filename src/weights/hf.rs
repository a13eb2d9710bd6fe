//! HF `model.safetensors` of `CLIPSegForImageSegmentation` into [`ClipSeg`].
//!
//! Our field paths are HF's names, so the map is short: LayerNorm `weight`/`bias` are burn's
//! `gamma`/`beta` and Linear weights are transposed (both by [`PyTorchToBurnAdapter`]), the
//! refined head's `nn.Sequential` indices `0/2/4` are fields `layer0/2/4`, and the
//! `TransposedConvolution` enum variant is not part of HF's names. Checkpoint tensors the model
//! doesn't use (`position_ids`, vision layers past the deepest extracted one, `post_layernorm`,
//! `visual_projection`, `logit_scale`) are ignored.
//!
//! Before anything is applied, the file's header is checked against the names and shapes the
//! model expects, so a wrong checkpoint fails with the HF key and both shapes.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::store::{
    ApplyResult, FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot,
    PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::{DType, Tensor};

use crate::Error;
use crate::model::ClipSeg;

/// The HF names and PyTorch-layout shapes of every tensor `model` needs, read without
/// materialising its (lazily initialised) parameters: loading a checkpoint should not pay for
/// a random init of 150M weights first.
pub fn expected_tensors(model: &ClipSeg) -> BTreeMap<String, Vec<usize>> {
    let mut visitor = ShapeVisitor::default();
    model.visit(&mut visitor);
    visitor.out
}

#[derive(Default)]
struct ShapeVisitor {
    /// (field name, type of the module holding it) from the root to the current parameter.
    path: Vec<(String, String)>,
    out: BTreeMap<String, Vec<usize>>,
}

impl ModuleVisitor for ShapeVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let mut shape = param.lazy_shape().to_vec();
        // Each entry is a field name and the type of the module that holds it.
        let Some((leaf, owner)) = self.path.last() else {
            return;
        };
        let leaf = match (owner.as_str(), leaf.as_str()) {
            // PyTorch stores Linear weights as [out, in], burn as [in, out].
            ("Struct:Linear", "weight") => {
                shape.reverse();
                "weight"
            }
            ("Struct:LayerNorm", "gamma") => "weight",
            ("Struct:LayerNorm", "beta") => "bias",
            (_, other) => other,
        };
        // Enum variants (`Plain`, `Refined`) are not part of HF's names.
        let mut names: Vec<&str> = self.path[..self.path.len() - 1]
            .iter()
            .filter(|(_, owner)| !owner.starts_with("Enum:"))
            .map(|(name, _)| name.as_str())
            .collect();
        names.push(leaf);
        self.out.insert(hf_name(&names.join(".")), shape);
    }
}

/// Burn path to HF key: only the Sequential indices differ.
fn hf_name(path: &str) -> String {
    path.replace("transposed_convolution.layer", "transposed_convolution.")
}

/// Name -> (dtype, shape) as listed in a safetensors header, checked against the file length.
pub fn read_header(
    bytes_or_prefix: &[u8],
    file_len: u64,
) -> Result<BTreeMap<String, (String, Vec<usize>)>, Error> {
    let bad = |msg: String| Error::Weights(format!("model.safetensors: {msg}"));
    let Some(len_bytes) = bytes_or_prefix.get(..8) else {
        return Err(bad(format!(
            "file of {file_len} bytes is too short to be safetensors"
        )));
    };
    let header_len = u64::from_le_bytes(
        len_bytes
            .try_into()
            .map_err(|_| bad("short header".into()))?,
    );
    let header_end = 8u64.saturating_add(header_len);
    let Some(header) = bytes_or_prefix
        .get(8..header_end as usize)
        .filter(|_| header_end <= file_len)
    else {
        return Err(bad(format!(
            "header of {header_len} bytes does not fit in {file_len} bytes (truncated?)"
        )));
    };
    let entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| bad(format!("unreadable header ({e})")))?;
    let mut out = BTreeMap::new();
    for (name, entry) in entries {
        if name == "__metadata__" {
            continue;
        }
        let info: HeaderEntry =
            serde_json::from_value(entry).map_err(|e| bad(format!("entry {name}: {e}")))?;
        let end = header_end.saturating_add(info.data_offsets[1]);
        if end > file_len {
            return Err(bad(format!(
                "tensor {name} ends at byte {end} but the file has {file_len} bytes (truncated download?)"
            )));
        }
        // The shape must be what the bytes hold: sizes are trusted from here on.
        let [start, stop] = info.data_offsets;
        let width = match info.dtype.as_str() {
            "F64" | "I64" | "U64" => Some(8),
            "F32" | "I32" | "U32" => Some(4),
            "F16" | "BF16" | "I16" | "U16" => Some(2),
            "I8" | "U8" | "BOOL" => Some(1),
            _ => None,
        };
        let needs = (info.shape.iter())
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .and_then(|n| width.and_then(|w| n.checked_mul(w)));
        if stop < start || width.is_some() && needs != Some(stop - start) {
            return Err(bad(format!(
                "tensor {name} of shape {:?} ({}) does not fit its {} bytes",
                info.shape,
                info.dtype,
                stop.saturating_sub(start)
            )));
        }
        out.insert(name, (info.dtype, info.shape));
    }
    Ok(out)
}

/// The values a header's tensors hold (their shapes' products, backed by bytes).
pub fn values(header: &BTreeMap<String, (String, Vec<usize>)>) -> u128 {
    let count = |shape: &Vec<usize>| shape.iter().map(|&d| d as u128).product::<u128>();
    header.values().map(|(_, shape)| count(shape)).sum()
}

#[derive(serde::Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Checks `header` against what `model` needs: every key present, every shape equal.
pub fn check_header(
    model: &ClipSeg,
    header: &BTreeMap<String, (String, Vec<usize>)>,
) -> Result<(), Error> {
    for (name, shape) in expected_tensors(model) {
        match header.get(&name) {
            None => {
                return Err(Error::Weights(format!(
                    "the checkpoint has no tensor {name} (expected shape {shape:?}); is it a CLIPSegForImageSegmentation checkpoint for this config.json?"
                )));
            }
            Some((_, found)) if *found != shape => {
                return Err(Error::Weights(format!(
                    "tensor {name} has shape {found:?} in the checkpoint but config.json implies {shape:?}"
                )));
            }
            Some((dtype, _)) if !matches!(dtype.as_str(), "F32" | "F16" | "BF16" | "F64") => {
                return Err(Error::Weights(format!(
                    "tensor {name} has unsupported dtype {dtype}"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// HF's `nn.Sequential` indices to our field names; everything else is already HF's name.
fn remapper() -> Result<KeyRemapper, Error> {
    KeyRemapper::new()
        .add_pattern(
            r"^decoder\.transposed_convolution\.(\d+)\.",
            "decoder.transposed_convolution.layer$1.",
        )
        .map_err(|e| Error::Weights(e.to_string()))
}

/// Fills `model` from a safetensors store whose header was already checked.
pub fn apply(model: &mut ClipSeg, store: SafetensorsStore) -> Result<(), Error> {
    let adapter = PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32));
    let mut store = store
        .remap(remapper()?)
        .with_from_adapter(adapter)
        .skip_enum_variants(true)
        .allow_partial(true)
        .validate(false);
    let result = model
        .load_from(&mut store)
        .map_err(|e| Error::Weights(format!("model.safetensors: {e}")))?;
    finish("model.safetensors", result)
}

/// The tensors of a `pytorch_model.bin` (older HF checkpoints, CIDAS's among them), as
/// [`read_header`] lists safetensors'.
#[cfg(feature = "native")]
pub fn pytorch_header(
    path: &std::path::Path,
) -> Result<BTreeMap<String, (String, Vec<usize>)>, Error> {
    use burn::store::{ModuleStore, PytorchStore};
    // Contiguous re-indexing (on by default) would turn the Sequential's 0/2/4 into 0/1/2.
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
    let tensors = (store.get_all_tensors())
        .map_err(|e| Error::Weights(format!("{}: {e}", path.display())))?;
    let entries = tensors.iter();
    Ok(entries
        .map(|(name, t)| (name.clone(), (format!("{:?}", t.dtype), t.shape.to_vec())))
        .collect())
}

/// Fills `model` from a `pytorch_model.bin` whose [`pytorch_header`] was checked against it.
#[cfg(feature = "native")]
pub fn load_pytorch(model: &mut ClipSeg, path: &std::path::Path) -> Result<(), Error> {
    use burn::store::PytorchStore;
    let mut store = PytorchStore::from_file(path)
        .remap(remapper()?)
        .map_indices_contiguous(false)
        .allow_partial(true)
        .validate(false);
    let result = model
        .load_from(&mut store)
        .map_err(|e| Error::Weights(format!("{}: {e}", path.display())))?;
    finish("pytorch_model.bin", result)
}

fn finish(file: &str, result: ApplyResult) -> Result<(), Error> {
    if let Some(err) = result.errors.first() {
        return Err(Error::Weights(format!("{file}: {err}")));
    }
    if let Some((path, _)) = result.missing.first() {
        return Err(Error::Weights(format!(
            "{file}: tensor {path} was not loaded"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClipSegConfig;

    fn tiny() -> ClipSegConfig {
        let mut c = ClipSegConfig::default();
        c.text_config.vocab_size = 10;
        c.text_config.hidden_size = 8;
        c.text_config.num_attention_heads = 2;
        c.text_config.intermediate_size = 8;
        c.text_config.num_hidden_layers = 1;
        c.vision_config.hidden_size = 8;
        c.vision_config.num_attention_heads = 2;
        c.vision_config.intermediate_size = 8;
        c.vision_config.num_hidden_layers = 3;
        c.extract_layers = vec![0, 1];
        c.projection_dim = 4;
        c.reduce_dim = 4;
        c.decoder_intermediate_size = 4;
        c.decoder_num_attention_heads = 2;
        c.use_complex_transposed_convolution = true;
        c
    }

    #[test]
    fn expected_names_are_hf_names() {
        let model = ClipSeg::new(&tiny(), &burn::tensor::Device::flex()).unwrap();
        let names = expected_tensors(&model);
        for key in [
            "clip.text_model.embeddings.token_embedding.weight",
            "clip.text_model.final_layer_norm.weight",
            "clip.text_model.encoder.layers.0.self_attn.q_proj.weight",
            "clip.vision_model.embeddings.class_embedding",
            "clip.vision_model.pre_layrnorm.bias",
            "clip.vision_model.encoder.layers.1.mlp.fc2.bias",
            "clip.text_projection.weight",
            "decoder.transposed_convolution.0.weight",
            "decoder.transposed_convolution.4.bias",
            "decoder.reduces.1.weight",
            "decoder.layers.0.layer_norm2.bias",
            "decoder.film_mul.weight",
        ] {
            assert!(names.contains_key(key), "{key} not in {:?}", names.keys());
        }
        // Only the layers the decoder reads; Linear shapes in PyTorch's [out, in] layout.
        assert!(!names.contains_key("clip.vision_model.encoder.layers.2.mlp.fc1.weight"));
        assert_eq!(names["clip.text_projection.weight"], vec![4, 8]);
        assert_eq!(names["decoder.reduces.0.weight"], vec![4, 8]);
    }

    /// `implied_parameters` never exceeds what a checkpoint of the config holds (it would
    /// refuse a good checkpoint), and is most of it (it must catch a config claiming more).
    #[test]
    fn the_config_bound_is_a_lower_bound() {
        let mut plain = tiny();
        plain.use_complex_transposed_convolution = false;
        let mut wide = tiny();
        wide.text_config.vocab_size = 1000;
        wide.vision_config.intermediate_size = 64;
        for config in [tiny(), plain, wide] {
            let model = ClipSeg::new(&config, &burn::tensor::Device::flex()).unwrap();
            let held: u128 = (expected_tensors(&model).values())
                .map(|shape| shape.iter().map(|&d| d as u128).product::<u128>())
                .sum();
            let implied = config.implied_parameters();
            assert!(implied <= held && implied * 2 > held, "{implied} of {held}");
        }
    }

    #[test]
    fn shapes_must_fit_their_bytes() {
        let header =
            br#"{"t": {"dtype": "F32", "shape": [1000000000, 8], "data_offsets": [0, 4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header);
        bytes.extend([0; 4]);
        let err = read_header(&bytes, bytes.len() as u64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not fit its 4 bytes"), "{err}");
    }

    #[test]
    fn truncated_header_is_an_error() {
        let mut bytes = 100u64.to_le_bytes().to_vec();
        bytes.extend(b"{}");
        let err = read_header(&bytes, bytes.len() as u64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
