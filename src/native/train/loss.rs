//! Segmentation losses on logits: `bce`, `dice` and `bce+dice` (burn-train has no Dice loss).

use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;

/// Which loss `clipseg train` minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Loss {
    #[serde(rename = "bce")]
    Bce,
    #[serde(rename = "dice")]
    Dice,
    #[serde(rename = "bce+dice")]
    BceDice,
}

impl std::str::FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bce" => Ok(Self::Bce),
            "dice" => Ok(Self::Dice),
            "bce+dice" => Ok(Self::BceDice),
            other => Err(format!("unknown loss {other:?} (bce, dice, bce+dice)")),
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bce => "bce",
            Self::Dice => "dice",
            Self::BceDice => "bce+dice",
        })
    }
}

impl Loss {
    /// Scalar loss of `logits` against `target` in {0, 1}, both [batch, H, W].
    pub fn forward(self, logits: Tensor<3>, target: Tensor<3>) -> Tensor<1> {
        match self {
            Self::Bce => bce_with_logits(logits, target),
            Self::Dice => soft_dice(logits, target),
            Self::BceDice => {
                bce_with_logits(logits.clone(), target.clone()) + soft_dice(logits, target)
            }
        }
    }
}

/// Mean binary cross-entropy on logits in the overflow-free form
/// `max(x, 0) - x y + log(1 + exp(-|x|))` (what `BCEWithLogitsLoss` computes).
pub fn bce_with_logits(logits: Tensor<3>, target: Tensor<3>) -> Tensor<1> {
    let positive = logits.clone().clamp_min(0.0);
    let softplus = logits.clone().abs().neg().exp().add_scalar(1.0).log();
    (positive - logits * target + softplus).mean()
}

/// 1 - soft Dice per sample, averaged over the batch; +1 smoothing keeps empty masks finite
/// (an all-background target is scored by how little probability the prediction spends).
pub fn soft_dice(logits: Tensor<3>, target: Tensor<3>) -> Tensor<1> {
    let [batch, h, w] = logits.dims();
    let p = sigmoid(logits).reshape([batch, h * w]);
    let t = target.reshape([batch, h * w]);
    let intersection = (p.clone() * t.clone()).sum_dim(1);
    let total = p.sum_dim(1) + t.sum_dim(1);
    let dice = (intersection * 2.0 + 1.0) / (total + 1.0);
    (dice.neg() + 1.0).mean()
}
