//! Step 3, the decoder: the image's activations and the prompts' embeddings to logits.

use std::sync::Arc;

use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use super::build::{Weights, matrix};
use super::cpu::{PackedLayer, Scratch};
use super::executor::{Executor, Place, host_values, param_bytes, read_values};
use super::gpu::{self, Gpu, GpuLinear};
use super::head::{CpuHead, GpuHead, patch_tokens};
use super::layer::Norm;
use super::stack::Stack;
use crate::Error;
use crate::config::ClipSegConfig;
use crate::model::decoder::{Decoder, TransposedConvolution, film};
use crate::model::{ImageFeatures, UNetDecoder, other_decoder};

const PREFIX: &str = "decoder.";

/// CLIPSeg's transformer decoder, or the U-Net one (burn's ops).
#[allow(clippy::large_enum_variant)] // one per engine: boxing would only add an indirection
pub(super) enum DecoderRun {
    Transformer(TransformerDecoder),
    UNet(UNetDecoder),
}

pub(super) struct TransformerDecoder {
    film_mul: Linear,
    film_add: Linear,
    reduces: Reduces,
    layers: Stack,
    head: Head,
    conditional_layer: usize,
}

enum Reduces {
    Burn(Vec<Linear>),
    Gpu(Arc<Gpu>, Vec<GpuLinear>),
}

#[allow(clippy::large_enum_variant)] // one per engine
enum Head {
    Burn(TransposedConvolution),
    Cpu(CpuHead),
    Gpu(Arc<Gpu>, GpuHead),
}

impl DecoderRun {
    pub fn build(
        mut decoder: Decoder,
        unet: Option<UNetDecoder>,
        config: &ClipSegConfig,
        weights: &Weights,
        executor: &Executor,
    ) -> Result<Self, Error> {
        if let Some(mut unet) = unet {
            // The HF decoder stays in a U-Net run's weights (transformers loads it): read and
            // checked, then dropped.
            weights.fill(&mut decoder, PREFIX)?;
            weights.fill(&mut unet, "unet.")?;
            return Ok(Self::UNet(unet));
        }
        let Decoder {
            mut film_mul,
            mut film_add,
            transposed_convolution,
            reduces,
            layers,
            conditional_layer,
        } = decoder;
        weights.fill(&mut film_mul, &format!("{PREFIX}film_mul."))?;
        weights.fill(&mut film_add, &format!("{PREFIX}film_add."))?;
        let device = film_mul.weight.device();
        // The decoder's layers are 1% of the model but the part whose errors show most in the
        // masks: f32 (or bf16 on AMX) beside int8 towers.
        let executor = match executor {
            Executor::Cpu(precision) => Executor::Cpu(precision.decoder()),
            other => other.clone(),
        };
        let reduces = Self::reduces(reduces, config, weights, &executor, &device)?;
        let prefix = format!("{PREFIX}layers.");
        let spec = config.decoder_spec();
        let layers = Stack::build(layers, spec, &prefix, weights, &executor, &device)?;
        let head = Self::head(transposed_convolution, config, weights, &executor, &device)?;
        Ok(Self::Transformer(TransformerDecoder {
            film_mul,
            film_add,
            reduces,
            layers,
            head,
            conditional_layer,
        }))
    }

    /// On the GPU kernels all or none (where they fit the shape), else burn's ops.
    fn reduces(
        reduces: Vec<Linear>,
        c: &ClipSegConfig,
        weights: &Weights,
        executor: &Executor,
        device: &Device,
    ) -> Result<Reduces, Error> {
        let (k, n) = (c.vision_config.hidden_size, c.reduce_dim);
        let prefix = |i: usize| format!("{PREFIX}reduces.{i}.");
        let each = reduces.into_iter().enumerate();
        if let (Executor::Gpu(gpu), true) = (executor, GpuLinear::supports(k, n)) {
            let make = |d: &Device| LinearConfig::new(k, n).init(d);
            let uploaded = each
                .map(|(i, r)| {
                    GpuLinear::new(gpu, &matrix(&weights.host(r, device, make, &prefix(i))?)?)
                })
                .collect::<Result<_, Error>>()?;
            return Ok(Reduces::Gpu(gpu.clone(), uploaded));
        }
        let filled = each.map(|(i, mut r)| {
            weights.fill(&mut r, &prefix(i))?;
            Ok(r)
        });
        Ok(Reduces::Burn(filled.collect::<Result<_, Error>>()?))
    }

    /// On the kernels where its convolutions map to matrices they take, else burn's ops.
    fn head(
        head: TransposedConvolution,
        c: &ClipSegConfig,
        weights: &Weights,
        executor: &Executor,
        device: &Device,
    ) -> Result<Head, Error> {
        let prefix = format!("{PREFIX}transposed_convolution.");
        let make = |d: &Device| Decoder::new(c, d).transposed_convolution;
        if let Executor::Burn = executor {
            let mut head = head;
            weights.fill(&mut head, &prefix)?;
            return Ok(Head::Burn(head));
        }
        let host = weights.host(head, device, make, &prefix)?;
        let kernels = match executor {
            Executor::Cpu(_) => CpuHead::new(&host)?.map(Head::Cpu),
            Executor::Gpu(gpu) => GpuHead::new(gpu, &host)?.map(|g| Head::Gpu(gpu.clone(), g)),
            Executor::Burn => None,
        };
        if let Some(head) = kernels {
            return Ok(head);
        }
        // burn's ops, on the device: a host copy made for the kernels is not there.
        if matches!(weights, Weights::Loaded) || *device == Device::flex() {
            return Ok(Head::Burn(host));
        }
        let mut head = make(device);
        weights.fill(&mut head, &prefix)?;
        Ok(Head::Burn(head))
    }

    /// Where the reduces, layers and head run (`None` for the U-Net decoder).
    pub fn placement(&self) -> (Option<Place>, Option<Place>, Option<Place>) {
        let Self::Transformer(d) = self else {
            return (None, None, None);
        };
        let reduces = match d.reduces {
            Reduces::Burn(_) => Place::Burn,
            Reduces::Gpu(..) => Place::Gpu,
        };
        let head = match d.head {
            Head::Burn(_) => Place::Burn,
            Head::Cpu(_) => Place::Cpu,
            Head::Gpu(..) => Place::Gpu,
        };
        (Some(reduces), Some(d.layers.place()), Some(head))
    }

    /// Bytes its weights hold in GPU memory.
    pub fn device_bytes(&self) -> u64 {
        let d = match self {
            Self::UNet(unet) => return param_bytes(unet),
            Self::Transformer(d) => d,
        };
        let reduces: u64 = match &d.reduces {
            Reduces::Burn(r) => r.iter().map(param_bytes).sum(),
            Reduces::Gpu(_, r) => r.iter().map(GpuLinear::weight_bytes).sum(),
        };
        let head = match &d.head {
            Head::Burn(h) => param_bytes(h),
            Head::Cpu(_) => 0,
            Head::Gpu(_, h) => h.weight_bytes(),
        };
        param_bytes(&d.film_mul)
            + param_bytes(&d.film_add)
            + reduces
            + d.layers.device_bytes()
            + head
    }

    /// Raw vision activations (in `extract_layers` order) to what this decoder caches.
    pub async fn image_features(&self, activations: &[Tensor<3>]) -> Result<ImageFeatures, Error> {
        let d = match self {
            Self::UNet(unet) => return Ok(ImageFeatures::UNet(unet.reduce(activations))),
            Self::Transformer(d) => d,
        };
        let mut reduced = Vec::with_capacity(activations.len());
        for (i, a) in activations.iter().rev().enumerate() {
            reduced.push(match &d.reduces {
                Reduces::Burn(r) => r[i].forward(a.clone()),
                Reduces::Gpu(gpu, r) => {
                    let [batch, seq, _] = a.dims();
                    let values = read_values(a.clone()).await?;
                    let out = r[i].forward(gpu, &values, batch * seq).await?;
                    let data = TensorData::new(out, [batch, seq, r[i].n()]);
                    Tensor::from_data(data, &a.device())
                }
            });
        }
        Ok(ImageFeatures::Transformer(reduced))
    }

    /// Logits [prompts, S, S] for one encoded image and the prompts' conditional embeddings.
    pub async fn forward(
        &self,
        image: &ImageFeatures,
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        match (image, self) {
            (ImageFeatures::UNet(skips), Self::UNet(unet)) => Ok(unet.forward(skips, conditional)),
            (ImageFeatures::Transformer(reduced), Self::Transformer(d)) => {
                d.forward(reduced, conditional).await
            }
            _ => Err(other_decoder()),
        }
    }
}

impl TransformerDecoder {
    async fn forward(
        &self,
        reduced: &[Tensor<3>],
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        if let (Stack::Cpu(layers), Head::Cpu(head)) = (&self.layers, &self.head) {
            return self.forward_cpu(layers, head, reduced, conditional);
        }
        let Some(last) = reduced.len().min(self.layers.len()).checked_sub(1) else {
            unreachable!("config validation guarantees at least one extract layer")
        };
        let device = conditional.device();
        let mut output: Option<Tensor<3>> = None;
        for (i, r) in reduced.iter().enumerate().take(last + 1) {
            let mut x = match output.take() {
                Some(o) => r.clone() + o,
                None => r.clone(),
            };
            if i == self.conditional_layer {
                x = film(&self.film_mul, &self.film_add, x, &conditional);
            }
            // The GPU head takes the last layer's output as the kernels leave it on the host
            // (not uploaded as a tensor and read back again).
            if let (true, Stack::Gpu(gpu, layers), Head::Gpu(_, head)) =
                (i == last, &self.layers, &self.head)
            {
                let [batch, seq, rd] = x.dims();
                let values = read_values(x).await?;
                let post = Norm::Post;
                let mut out =
                    gpu::forward(gpu, &[&layers[i]], &values, batch, seq, post, &[0]).await?;
                return head_on_gpu(head, gpu, &out.remove(0), [batch, seq, rd], &device).await;
            }
            output = Some(self.layers.layer(i, x, Norm::Post).await?);
        }
        let Some(output) = output else {
            unreachable!("the loop runs up to `last`")
        };
        let [batch, seq, rd] = output.dims();
        match &self.head {
            Head::Burn(head) => Ok(head.logits(output)),
            Head::Gpu(gpu, head) => {
                let values = read_values(output).await?;
                head_on_gpu(head, gpu, &values, [batch, seq, rd], &device).await
            }
            Head::Cpu(head) => {
                let (tokens, grid) = patch_tokens(&host_values(output)?, seq, rd);
                let (logits, side) = head.forward(&tokens, batch, grid);
                Ok(Tensor::from_data(
                    TensorData::new(logits, [batch, side, side]),
                    &device,
                ))
            }
        }
    }

    /// The whole decoder on the CPU kernels, the hidden states in one host buffer and the
    /// layers' buffers kept from prompt to prompt (through burn tensors layer by layer, each
    /// layer would copy its states out and back and zero a fresh scratch).
    fn forward_cpu(
        &self,
        layers: &[PackedLayer],
        head: &CpuHead,
        reduced: &[Tensor<3>],
        conditional: Tensor<2>,
    ) -> Result<Tensor<3>, Error> {
        let device = conditional.device();
        let [prompts, _] = conditional.dims();
        let mul = host_values(self.film_mul.forward(conditional.clone()))?;
        let add = host_values(self.film_add.forward(conditional))?;
        let (mut x, mut seq, mut rd) = (Vec::new(), 0, 0);
        Scratch::with_kept(|scratch| -> Result<(), Error> {
            for (i, (r, layer)) in reduced.iter().zip(layers).enumerate() {
                let [batch, r_seq, r_rd] = r.dims();
                if (batch != 1 && batch != prompts) || (i > 0 && [r_seq, r_rd] != [seq, rd]) {
                    return Err(Error::Input(format!(
                        "reduced activations [{batch}, {r_seq}, {r_rd}] do not match {prompts} \
                     prompts and the other layers"
                    )));
                }
                (seq, rd) = (r_seq, r_rd);
                // Batch 1 (one image for every prompt) is added to each prompt's states.
                let r = host_values(r.clone())?;
                let per_prompt = |p: usize| &r[(p % batch) * seq * rd..][..seq * rd];
                if i == 0 {
                    x = (0..prompts).flat_map(per_prompt).copied().collect();
                } else {
                    for (p, states) in x.chunks_exact_mut(seq * rd).enumerate() {
                        states
                            .iter_mut()
                            .zip(per_prompt(p))
                            .for_each(|(v, r)| *v += r);
                    }
                }
                if i == self.conditional_layer {
                    // FiLM: each prompt's states scaled and shifted by its embedding's.
                    for (p, states) in x.chunks_exact_mut(seq * rd).enumerate() {
                        let (mul, add) = (&mul[p * rd..][..rd], &add[p * rd..][..rd]);
                        for row in states.chunks_exact_mut(rd) {
                            for ((v, m), a) in row.iter_mut().zip(mul).zip(add) {
                                *v = m * *v + a;
                            }
                        }
                    }
                }
                layer.forward(&mut x, prompts, seq, Norm::Post, scratch);
            }
            Ok(())
        })?;
        let (tokens, grid) = patch_tokens(&x, seq, rd);
        let (logits, side) = head.forward(&tokens, prompts, grid);
        let data = TensorData::new(logits, [prompts, side, side]);
        Ok(Tensor::from_data(data, &device))
    }
}

/// The last layer's output `values` [batch, seq, rd] through the GPU head.
async fn head_on_gpu(
    head: &GpuHead,
    gpu: &Gpu,
    values: &[f32],
    [batch, seq, rd]: [usize; 3],
    device: &Device,
) -> Result<Tensor<3>, Error> {
    let (tokens, grid) = patch_tokens(values, seq, rd);
    let (logits, side) = head.forward(gpu, &tokens, batch, grid).await?;
    Ok(Tensor::from_data(
        TensorData::new(logits, [batch, side, side]),
        device,
    ))
}
