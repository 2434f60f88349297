//! The network with its weights frozen, for the engine's hot path: the network core
//! ([`crate::net`]) with weight gradients switched off. A forward pass keeps what the backward
//! needs; the backward computes only the gradient with respect to the input, from gradients
//! arriving at every tap.
//!
//! The core works channels last (NHWC), so tap vectors are flattened in (H, W, C) order, not
//! the (C, H, W) of ALGORITHM.md §1: every distance the cost takes is invariant to a fixed
//! permutation of coordinates, and the reference set goes through the same code, so the cost is
//! the same number.

use crate::model::Cnn;
use crate::net::{Acts, Net, Want};

/// The frozen network of ALGORITHM.md §1 (with its classes) on the core.
#[derive(Clone)]
pub struct FrozenCnn {
    net: Net,
    /// The layer each of the four taps (input, conv0, conv1, fc) is the output of.
    tap_layers: [Option<usize>; 4],
}

/// Images a pass patches at once (see [`crate::net::pass::CHUNK`]); callers that stream large
/// sets cut them to this size too.
pub const CHUNK: usize = crate::net::pass::CHUNK;

/// Activations of a batch of M images, kept for the backward pass. Every tap is row-major,
/// one row per image.
///
/// # Shapes
/// `inputs` M×784, `conv0` M×6272 (14×14×32), `conv1` M×3136 (7×7×64), `fc` M×1024 before
/// its ReLU, `logits` and `probs` M×K.
#[derive(Default, Clone)]
pub struct Forward {
    acts: Acts,
    tap_layers: [Option<usize>; 4],
}

impl Forward {
    /// Images in the batch.
    pub fn m(&self) -> usize {
        self.acts.m
    }

    /// Tap k (0 input, 1 conv0, 2 conv1, 3 fc), M rows.
    pub fn tap(&self, k: usize) -> &[f32] {
        match self.tap_layers[k] {
            None => &self.acts.input,
            Some(l) => self.acts.layer(l).unwrap_or(&[]),
        }
    }

    pub fn inputs(&self) -> &[f32] {
        self.tap(0)
    }

    pub fn conv0(&self) -> &[f32] {
        self.tap(1)
    }

    pub fn conv1(&self) -> &[f32] {
        self.tap(2)
    }

    pub fn fc(&self) -> &[f32] {
        self.tap(3)
    }

    pub fn logits(&self) -> &[f32] {
        self.acts.logits()
    }

    pub fn probs(&self) -> &[f32] {
        &self.acts.probs
    }
}

/// Gradients of the cost arriving at each tap; empty vectors mean zero.
///
/// # Shapes
/// Same as the matching [`Forward`] taps: M×784, M×6272, M×3136, M×1024 and M×K (the
/// logits).
#[derive(Default, Clone)]
pub struct TapGrads {
    pub inputs: Vec<f32>,
    pub conv0: Vec<f32>,
    pub conv1: Vec<f32>,
    pub fc: Vec<f32>,
    pub logits: Vec<f32>,
}

impl FrozenCnn {
    /// p(label) of each image (`pixels`: N×784, `labels`: N) as an 8-bit PNG stores it
    /// (clamped to [0, 1], rounded to 1/255), classified again.
    pub fn p_label_as_png(&self, pixels: &[f32], labels: &[u8]) -> Vec<f32> {
        let quantised: Vec<f32> = pixels
            .iter()
            .map(|&v| crate::data::to_u8(v) as f32 / 255.0)
            .collect();
        if quantised.is_empty() {
            return Vec::new();
        }
        let mut f = Forward::default();
        self.forward(&quantised, &mut f);
        let k = self.classes();
        f.probs()
            .chunks_exact(k)
            .zip(labels)
            .map(|(p, &l)| p.get(l as usize).copied().unwrap_or(0.0))
            .collect()
    }

    /// The network of `cnn` on the core.
    pub fn new(cnn: &Cnn) -> candle_core::Result<Self> {
        let net = cnn.to_net()?;
        let taps = net.taps();
        let tap_layers = std::array::from_fn(|k| taps.get(k).and_then(|t| t.after));
        Ok(Self { net, tap_layers })
    }

    /// The network on the core.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.net.classes()
    }

    /// Runs the network on `x` (M×784, row-major), filling `f`.
    pub fn forward(&self, x: &[f32], f: &mut Forward) {
        f.tap_layers = self.tap_layers;
        self.net.forward(x, &mut f.acts);
    }

    /// d cost / d inputs (M×784) from the gradients at every tap of the forward `f`. Reuses
    /// `f`'s scratch buffers, so a step allocates no large buffer.
    pub fn backward(&self, f: &mut Forward, g: &TapGrads) -> Vec<f32> {
        let taps = [&g.inputs[..], &g.conv0, &g.conv1, &g.fc];
        let want = Want {
            input: true,
            weights: false,
        };
        self.net
            .backward(&mut f.acts, &g.logits, &taps, want, &mut Vec::new())
    }
}
