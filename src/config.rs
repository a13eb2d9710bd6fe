//! `config.json` of an HF CLIPSeg folder, with transformers' defaults for missing fields.
//!
//! Field names are HF's so the file deserialises directly; [`ClipSegConfig::validate`] turns
//! everything the model can't honour into one readable error instead of a shape panic later.

use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

/// Activation functions HF's `ACT2FN` maps the config strings we accept to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    #[serde(rename = "gelu")]
    Gelu,
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
    #[serde(rename = "silu", alias = "swish")]
    Silu,
}

/// Hyper-parameters of one transformer layer: the towers' from their configs, the decoder's
/// derived from the vision config as HF does ([`ClipSegConfig::decoder_spec`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerSpec {
    pub hidden: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub activation: Activation,
    pub eps: f64,
}

/// `unet_decoder` in `config.json` (our key; transformers ignores it and keeps the HF decoder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    /// Channels at every scale.
    pub width: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        Self { width: 64 }
    }
}

impl UNetConfig {
    /// Each extracted layer beyond the deepest doubles the resolution, so the patch size must
    /// be divisible by 2^(layers - 1) for the head to land exactly on the image size.
    pub fn validate(&self, c: &ClipSegConfig) -> Result<(), Error> {
        let doublings = c.extract_layers.len().saturating_sub(1);
        let patch = c.vision_config.patch_size;
        if self.width == 0 {
            return Err(Error::Config("unet_decoder.width must be positive".into()));
        }
        if doublings >= usize::BITS as usize || !patch.is_multiple_of(1 << doublings) {
            return Err(Error::Config(format!(
                "the unet decoder doubles the resolution once per extract layer after the first \
                 ({doublings} times), so patch_size {patch} must be divisible by {}",
                1u64.checked_shl(doublings as u32).unwrap_or(0)
            )));
        }
        Ok(())
    }
}

/// `CLIPSegTextConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(deserialize_with = "activation")]
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    /// `2` is the legacy value of old checkpoints (CIDAS ones included): HF then pools at the
    /// argmax of the ids instead of at the first EOS. Both are reproduced.
    #[serde(deserialize_with = "single_id")]
    pub eos_token_id: i64,
}

impl TextConfig {
    pub fn layer_spec(&self) -> LayerSpec {
        LayerSpec {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            activation: self.hidden_act,
            eps: self.layer_norm_eps,
        }
    }
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

/// `CLIPSegVisionConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    #[serde(deserialize_with = "square")]
    pub image_size: usize,
    #[serde(deserialize_with = "square")]
    pub patch_size: usize,
    #[serde(deserialize_with = "activation")]
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl VisionConfig {
    pub fn layer_spec(&self) -> LayerSpec {
        LayerSpec {
            hidden: self.hidden_size,
            heads: self.num_attention_heads,
            intermediate: self.intermediate_size,
            activation: self.hidden_act,
            eps: self.layer_norm_eps,
        }
    }
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

/// `CLIPSegConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipSegConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    pub projection_dim: usize,
    pub extract_layers: Vec<usize>,
    pub reduce_dim: usize,
    pub decoder_num_attention_heads: usize,
    pub decoder_intermediate_size: usize,
    pub conditional_layer: usize,
    pub use_complex_transposed_convolution: bool,
    /// Ours, written by `clipseg train --decoder unet`: the model decodes with the U-Net
    /// decoder instead of the HF one (which stays in the file, so transformers still loads it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unet_decoder: Option<UNetConfig>,
}

/// The most layers a tower (or the decoder) may have.
pub const MAX_LAYERS: usize = 1024;

impl Default for ClipSegConfig {
    fn default() -> Self {
        Self {
            text_config: TextConfig::default(),
            vision_config: VisionConfig::default(),
            projection_dim: 512,
            extract_layers: vec![3, 6, 9],
            reduce_dim: 64,
            decoder_num_attention_heads: 4,
            decoder_intermediate_size: 2048,
            conditional_layer: 0,
            use_complex_transposed_convolution: false,
            unet_decoder: None,
        }
    }
}

impl ClipSegConfig {
    /// Parses and validates `config.json` text.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let config: Self =
            serde_json::from_str(text).map_err(|e| Error::Config(format!("config.json: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// The decoder layers': HF copies the vision config and overrides size, heads,
    /// intermediate size and activation.
    pub fn decoder_spec(&self) -> LayerSpec {
        LayerSpec {
            hidden: self.reduce_dim,
            heads: self.decoder_num_attention_heads,
            intermediate: self.decoder_intermediate_size,
            activation: Activation::Relu,
            eps: self.vision_config.layer_norm_eps,
        }
    }

    /// GFLOPs (2 per multiply-add) of one full pass's matrix products at `image` px and
    /// `tokens` prompt tokens: the vision layers run, the text layers, the decoder's reduces
    /// and layers. Convolutions, norms and softmax are left out (under 2% of the total for
    /// rd64 at 352 px).
    pub fn pass_gflop(&self, image: usize, tokens: usize) -> f64 {
        let layer = |seq: usize, hidden: usize, inter: usize| {
            let (s, h, i) = (seq as f64, hidden as f64, inter as f64);
            2.0 * s * (4.0 * h * h + 2.0 * h * i) + 4.0 * s * s * h
        };
        let (t, v) = (&self.text_config, &self.vision_config);
        let seq = (image / v.patch_size).pow(2) + 1;
        let depth = self.extract_layers.len() as f64;
        let vision =
            self.vision_layers_used() as f64 * layer(seq, v.hidden_size, v.intermediate_size);
        let text = t.num_hidden_layers as f64 * layer(tokens, t.hidden_size, t.intermediate_size);
        let reduces = depth * 2.0 * (seq * v.hidden_size * self.reduce_dim) as f64;
        let decoder = depth * layer(seq, self.reduce_dim, self.decoder_intermediate_size);
        (vision + text + reduces + decoder) / 1e9
    }

    /// Vision layers the segmenter runs: the deepest extracted layer and those before it.
    pub fn vision_layers_used(&self) -> usize {
        self.extract_layers.iter().max().map_or(0, |m| m + 1)
    }

    /// A lower bound of the weights this config implies: the towers' embeddings and layer
    /// matrices (the vision layers the segmenter runs), the decoder's reduces and layers.
    /// Saturates instead of overflowing (any size a JSON file can claim).
    pub fn implied_parameters(&self) -> u128 {
        let (t, v) = (&self.text_config, &self.vision_config);
        let n = |x: usize| x as u128;
        let mul = |a: u128, b: u128| a.saturating_mul(b);
        // Per layer: q, k, v, out [h, h] and fc1, fc2 [h, inter].
        let layer = |h: usize, inter: usize| {
            mul(
                n(h),
                n(h).saturating_mul(4).saturating_add(mul(2, n(inter))),
            )
        };
        let grid = n(v.image_size / v.patch_size.max(1));
        let text = mul(
            n(t.vocab_size).saturating_add(n(t.max_position_embeddings)),
            n(t.hidden_size),
        )
        .saturating_add(mul(
            n(t.num_hidden_layers),
            layer(t.hidden_size, t.intermediate_size),
        ));
        let patches = mul(n(v.num_channels), mul(n(v.patch_size), n(v.patch_size)));
        let positions = mul(grid, grid).saturating_add(1);
        let vision = mul(patches.saturating_add(positions), n(v.hidden_size)).saturating_add(mul(
            n(self.vision_layers_used()),
            layer(v.hidden_size, v.intermediate_size),
        ));
        let depth = n(self.extract_layers.len());
        let decoder = mul(
            depth,
            mul(n(v.hidden_size), n(self.reduce_dim))
                .saturating_add(layer(self.reduce_dim, self.decoder_intermediate_size)),
        );
        text.saturating_add(vision).saturating_add(decoder)
    }

    /// Refuses a config that claims over twice the weights `what` holds (`values` of them),
    /// before anything is built from it: a small file whose config claims a huge model would
    /// otherwise be allocated for (and in a browser, kill the tab). Smaller mismatches are
    /// left to the per-tensor checks, whose messages name the tensor.
    pub fn check_backed(&self, values: u128, what: &str) -> Result<(), Error> {
        let implied = self.implied_parameters();
        if implied / 2 > values {
            return Err(Error::Config(format!(
                "the config implies at least {implied} weights but {what} holds {values}: its sizes do not match its tensors"
            )));
        }
        Ok(())
    }

    /// Rejects configs HF would accept but this port can't run, or that HF itself can't run.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Config(msg));
        let (t, v) = (&self.text_config, &self.vision_config);
        for (name, hidden, heads) in [
            ("text_config", t.hidden_size, t.num_attention_heads),
            ("vision_config", v.hidden_size, v.num_attention_heads),
            ("decoder", self.reduce_dim, self.decoder_num_attention_heads),
        ] {
            if heads == 0 || hidden == 0 || hidden % heads != 0 {
                return bad(format!(
                    "{name}: hidden size {hidden} is not a positive multiple of {heads} attention heads"
                ));
            }
        }
        if self.extract_layers.is_empty() {
            return bad("extract_layers is empty".into());
        }
        // Each layer costs its structures whatever its size: a ceiling far above any CLIP's
        // (ViT-bigG has 48), so that tiny layers by the million are refused too.
        for (name, layers) in [
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("extract_layers (their count)", self.extract_layers.len()),
        ] {
            if layers > MAX_LAYERS {
                return bad(format!(
                    "{name} is {layers}; at most {MAX_LAYERS} are supported"
                ));
            }
        }
        if let Some(&l) = self
            .extract_layers
            .iter()
            .find(|&&l| l >= v.num_hidden_layers)
        {
            return bad(format!(
                "extract_layers names layer {l} but the vision model has {} layers",
                v.num_hidden_layers
            ));
        }
        // HF applies FiLM only when the loop reaches `conditional_layer`; past the end the
        // prompt would be ignored silently, which is never what a checkpoint means.
        if self.conditional_layer >= self.extract_layers.len() {
            return bad(format!(
                "conditional_layer {} must be below the number of extract_layers ({})",
                self.conditional_layer,
                self.extract_layers.len()
            ));
        }
        if v.patch_size == 0 || v.image_size < v.patch_size {
            return bad(format!(
                "vision patch_size {} must be in 1..=image_size {}",
                v.patch_size, v.image_size
            ));
        }
        if v.num_channels != 3 {
            return bad(format!(
                "vision num_channels {} (only RGB, 3, is supported)",
                v.num_channels
            ));
        }
        if self.use_complex_transposed_convolution && (v.patch_size % 4 != 0 || self.reduce_dim < 2)
        {
            return bad(format!(
                "use_complex_transposed_convolution needs patch_size divisible by 4 (got {}) and reduce_dim >= 2",
                v.patch_size
            ));
        }
        if t.max_position_embeddings < 2 || t.vocab_size == 0 {
            return bad(
                "text_config: max_position_embeddings must be >= 2 and vocab_size > 0".into(),
            );
        }
        if self.projection_dim == 0 || self.reduce_dim == 0 {
            return bad("projection_dim and reduce_dim must be positive".into());
        }
        if let Some(unet) = &self.unet_decoder {
            unet.validate(self)?;
        }
        Ok(())
    }
}

fn activation<'de, D: Deserializer<'de>>(d: D) -> Result<Activation, D::Error> {
    let name = String::deserialize(d)?;
    serde_json::from_value(serde_json::Value::String(name.clone())).map_err(|_| {
        serde::de::Error::custom(format!(
            "hidden_act \"{name}\" is not supported (quick_gelu, gelu, gelu_new, relu, silu are)"
        ))
    })
}

/// HF allows `image_size`/`patch_size` as an int or a pair; the decoder assumes a square grid.
fn square<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrPair {
        Int(usize),
        Pair(Vec<usize>),
    }
    match IntOrPair::deserialize(d)? {
        IntOrPair::Int(n) => Ok(n),
        IntOrPair::Pair(p) if p.len() == 2 && p[0] == p[1] => Ok(p[0]),
        IntOrPair::Pair(p) => Err(serde::de::Error::custom(format!(
            "non-square size {p:?} is not supported (the CLIPSeg decoder assumes a square grid)"
        ))),
    }
}

fn single_id<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IdOrList {
        Id(i64),
        List(Vec<i64>),
    }
    match IdOrList::deserialize(d)? {
        IdOrList::Id(id) => Ok(id),
        IdOrList::List(l) if l.len() == 1 => Ok(l[0]),
        IdOrList::List(l) => Err(serde::de::Error::custom(format!(
            "eos_token_id {l:?}: only a single id is supported"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_transformers_defaults() {
        let c = ClipSegConfig::from_json("{}").unwrap();
        assert_eq!(c.extract_layers, vec![3, 6, 9]);
        assert_eq!(c.vision_layers_used(), 10);
        assert_eq!(c.text_config.eos_token_id, 49407);
        assert_eq!(c.vision_config.patch_size, 32);
    }

    #[test]
    fn unsupported_values_are_one_line_errors() {
        for (json, needle) in [
            (r#"{"extract_layers": [3, 12]}"#, "layer 12"),
            (r#"{"conditional_layer": 3}"#, "conditional_layer 3"),
            (r#"{"vision_config": {"hidden_act": "mish"}}"#, "mish"),
            (
                r#"{"vision_config": {"image_size": [224, 320]}}"#,
                "non-square",
            ),
            (r#"{"reduce_dim": 30}"#, "multiple of 4"),
            (r#"{"text_config": {"eos_token_id": [1, 2]}}"#, "single id"),
            (
                r#"{"extract_layers": [1, 2, 3, 4, 5, 6, 7], "unet_decoder": {}}"#,
                "divisible by 64",
            ),
            ("not json", "config.json"),
        ] {
            let err = ClipSegConfig::from_json(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
