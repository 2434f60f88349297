//! The original CNN (ALGORITHM.md §1): its forward pass with the four taps, weight files,
//! training and evaluation.

pub mod eval;
pub mod onnx;
pub mod torch;
pub mod train;
pub mod weights;
pub mod worst;

use candle_core::{Device, Tensor};

pub use weights::WeightsError;

use crate::data::SIDE;

/// Result type of the numeric core.
pub type CandleResult<T> = candle_core::Result<T>;

/// Hidden units of the `fc` layer.
pub const FC_UNITS: usize = 1024;
/// Flattened size of the `conv1` tap (64×7×7).
pub const CONV1_DIM: usize = 64 * 7 * 7;
/// Flattened size of the `conv0` tap (32×14×14).
pub const CONV0_DIM: usize = 32 * 14 * 14;

/// The parameters of the network; each tensor is f32 on the CPU.
///
/// # Shapes
/// `conv0_w` `[32,1,5,5]`, `conv0_b` `[32]`, `conv1_w` `[64,32,5,5]`, `conv1_b` `[64]`,
/// `fc_w` `[1024,3136]`, `fc_b` `[1024]`, `softmax_w` `[K,1024]`, `softmax_b` `[K]`, K = 10 (or 11
/// for a model trained with an extra "fooling" class).
#[derive(Clone, Debug)]
pub struct Cnn {
    pub conv0_w: Tensor,
    pub conv0_b: Tensor,
    pub conv1_w: Tensor,
    pub conv1_b: Tensor,
    pub fc_w: Tensor,
    pub fc_b: Tensor,
    pub softmax_w: Tensor,
    pub softmax_b: Tensor,
}

/// The activations the backwork cost looks at, plus the logits and probabilities.
///
/// # Shapes
/// `inputs` N×1×28×28, `conv0` N×32×14×14, `conv1` N×64×7×7, `fc` N×1024 (before its ReLU),
/// `logits` and `probs` N×K.
pub struct Taps {
    pub inputs: Tensor,
    pub conv0: Tensor,
    pub conv1: Tensor,
    pub fc: Tensor,
    pub logits: Tensor,
    pub probs: Tensor,
}

/// The weight names of ALGORITHM.md §1, in file order.
pub const WEIGHT_NAMES: [&str; 8] = crate::net::ORIGINAL_WEIGHT_NAMES;

impl Cnn {
    /// Number of output classes (10, or 11 with a "fooling" class).
    pub fn num_classes(&self) -> usize {
        self.softmax_b.dims1().unwrap_or(0)
    }

    /// The tensors under their file names, in [`WEIGHT_NAMES`] order.
    pub fn named_tensors(&self) -> [(&'static str, &Tensor); 8] {
        [
            (WEIGHT_NAMES[0], &self.conv0_w),
            (WEIGHT_NAMES[1], &self.conv0_b),
            (WEIGHT_NAMES[2], &self.conv1_w),
            (WEIGHT_NAMES[3], &self.conv1_b),
            (WEIGHT_NAMES[4], &self.fc_w),
            (WEIGHT_NAMES[5], &self.fc_b),
            (WEIGHT_NAMES[6], &self.softmax_w),
            (WEIGHT_NAMES[7], &self.softmax_b),
        ]
    }

    /// The full forward pass. `x` is N×784 or N×1×28×28, pixels in [0, 1].
    pub fn forward_taps(&self, x: &Tensor) -> CandleResult<Taps> {
        let n = x.dim(0)?;
        let inputs = x.reshape((n, 1, SIDE, SIDE))?;
        let conv0 = conv_relu_pool(&inputs, &self.conv0_w, &self.conv0_b)?;
        let conv1 = conv_relu_pool(&conv0, &self.conv1_w, &self.conv1_b)?;
        let flat = conv1.flatten_from(1)?;
        let fc = flat.matmul(&self.fc_w.t()?)?.broadcast_add(&self.fc_b)?;
        let logits = fc
            .relu()?
            .matmul(&self.softmax_w.t()?)?
            .broadcast_add(&self.softmax_b)?;
        let probs = candle_nn::ops::softmax_last_dim(&logits)?;
        Ok(Taps {
            inputs,
            conv0,
            conv1,
            fc,
            logits,
            probs,
        })
    }

    /// Logits only. `x` is N×784 or N×1×28×28.
    pub fn logits(&self, x: &Tensor) -> CandleResult<Tensor> {
        Ok(self.forward_taps(x)?.logits)
    }

    /// Class probabilities of images given as N×784 f32 values in [0, 1] (on the core).
    pub fn predict(&self, pixels: &[f32]) -> CandleResult<Vec<Vec<f32>>> {
        let k = self.num_classes();
        let probs = self.to_net()?.probs(pixels, eval::EVAL_BATCH);
        Ok(probs.chunks_exact(k).map(<[f32]>::to_vec).collect())
    }

    /// Predicted class and its probability, per image (on the core).
    pub fn classify(&self, pixels: &[f32]) -> CandleResult<Vec<(usize, f32)>> {
        Ok(classify_net(&self.to_net()?, pixels))
    }
}

/// Whether the engine, training and evaluation can use `net` on the digits (1×28×28 grey
/// images, ten labels); else what does not fit, both shapes named.
pub fn fits_digits(net: &crate::net::Net) -> Result<(), String> {
    fits(net, &crate::data::digits_shape(), crate::data::NUM_LABELS)
}

/// Whether the engine, training and evaluation can use `net` on `data`: the network takes
/// the data's image shape and has at least its classes; else what does not fit, both shapes
/// named.
pub fn fits_data(net: &crate::net::Net, data: &crate::data::Dataset) -> Result<(), String> {
    fits(net, &data.shape, data.num_classes())?;
    activations_fit(net, data)
}

/// The largest activation a network may reach at a tap on the data's own images: the cost
/// sums squared differences of tap values in f32 (at most about 3.4e38), over thousands of
/// values, so activations past this make every distance infinite.
const MAX_ACTIVATION: f32 = 1e15;

/// Refuses a network whose activations overflow on the first images of `data` (weights
/// scaled by 1e30, say): every finite weight loads, but its taps' distances and its reference
/// sets would be infinite, and its probabilities meaningless.
fn activations_fit(net: &crate::net::Net, data: &crate::data::Dataset) -> Result<(), String> {
    let n = data.len().min(32);
    if n == 0 {
        return Ok(());
    }
    let mut a = crate::net::pass::Acts::inference();
    net.forward(&data.range_f32(0, n), &mut a);
    for (k, tap) in net.taps().iter().enumerate() {
        let peak = net.tap(&a, k).iter().fold(0.0f32, |m, v| {
            if v.is_finite() {
                m.max(v.abs())
            } else {
                f32::INFINITY
            }
        });
        if peak > MAX_ACTIVATION {
            return Err(format!(
                "its activations at {} reach {peak:.1e} on the data's images, past the {MAX_ACTIVATION:e} at which the cost's distances overflow; are its weights scaled right?",
                tap.name
            ));
        }
    }
    if a.probs.iter().any(|p| !p.is_finite()) {
        return Err("its class probabilities on the data's images are not finite".into());
    }
    Ok(())
}

fn fits(net: &crate::net::Net, shape: &crate::net::Shape, classes: usize) -> Result<(), String> {
    let input = net.arch().input;
    if input != *shape {
        return Err(format!(
            "the network takes {input} images, the data has {shape}"
        ));
    }
    if net.classes() < classes {
        return Err(format!(
            "the network has {} classes, the data has {classes}",
            net.classes()
        ));
    }
    Ok(())
}

/// Predicted class and its probability, per image of `pixels` (N×784 in [0, 1]).
pub fn classify_net(net: &crate::net::Net, pixels: &[f32]) -> Vec<(usize, f32)> {
    let k = net.classes();
    net.probs(pixels, eval::EVAL_BATCH)
        .chunks_exact(k)
        .map(|p| {
            let c = crate::net::kernels::argmax(p);
            (c, p[c])
        })
        .collect()
}

/// 5×5 convolution (stride 1, padding 2), bias, ReLU, 2×2 max-pool.
///
/// The pool is a reshape and two maxima rather than candle's `max_pool2d`: the values are the
/// same, but candle 0.11's `max_pool2d` backward scales the gradient by 1/4 (it multiplies by
/// the share of tied maxima instead of routing the gradient to the maximum), which a
/// finite-difference check catches; the maxima's backward is exact.
fn conv_relu_pool(x: &Tensor, w: &Tensor, b: &Tensor) -> CandleResult<Tensor> {
    let c = b.dim(0)?;
    let y = x
        .conv2d(w, 2, 1, 1, 1)?
        .broadcast_add(&b.reshape((1, c, 1, 1))?)?
        .relu()?;
    let (n, c, h, w) = y.dims4()?;
    y.reshape((n, c, h / 2, 2, w / 2, 2))?.max(5)?.max(3)
}

impl Cnn {
    /// This network on the core (the architecture of ALGORITHM.md §1 with its classes).
    pub fn to_net(&self) -> CandleResult<crate::net::Net> {
        let torch = self
            .named_tensors()
            .iter()
            .map(|(_, t)| t.flatten_all()?.to_vec1::<f32>())
            .collect::<CandleResult<Vec<_>>>()?;
        crate::net::Net::from_torch(crate::net::Arch::original(self.num_classes()), torch)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    /// The network of a core `net` of the original architecture.
    pub fn from_net(net: &crate::net::Net) -> CandleResult<Self> {
        if *net.arch() != crate::net::Arch::original(net.classes()) {
            return Err(candle_core::Error::Msg(
                "not the architecture of ALGORITHM.md §1".into(),
            ));
        }
        let specs = net
            .arch()
            .params()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let tensors = net
            .to_torch()
            .into_iter()
            .zip(&specs)
            .map(|(v, s)| Tensor::from_vec(v, s.torch_shape.as_slice(), &Device::Cpu))
            .collect::<CandleResult<Vec<_>>>()?;
        Self::from_tensors(tensors)
            .ok_or_else(|| candle_core::Error::Msg("not the eight tensors of §1".into()))
    }

    /// The network of the eight tensors of [`WEIGHT_NAMES`], in that order; `None` unless
    /// there are exactly eight (shapes are the caller's to check).
    pub fn from_tensors(tensors: Vec<Tensor>) -> Option<Self> {
        let [
            conv0_w,
            conv0_b,
            conv1_w,
            conv1_b,
            fc_w,
            fc_b,
            softmax_w,
            softmax_b,
        ] = <[Tensor; 8]>::try_from(tensors).ok()?;
        Some(Self {
            conv0_w,
            conv0_b,
            conv1_w,
            conv1_b,
            fc_w,
            fc_b,
            softmax_w,
            softmax_b,
        })
    }
}
