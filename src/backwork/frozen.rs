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

/// A frozen network on the core: the §1 network or any other [`crate::net::Arch`], with its
/// classes and its taps.
#[derive(Clone)]
pub struct FrozenCnn {
    net: Net,
    /// The layer each tap is the output of (`None`: the input).
    tap_layers: Vec<Option<usize>>,
    /// The taps' names.
    names: std::sync::Arc<[String]>,
}

/// Images a pass patches at once (see [`crate::net::pass::CHUNK`]); callers that stream large
/// sets cut them to this size too.
pub const CHUNK: usize = crate::net::pass::CHUNK;

/// Activations of a batch of M images, kept for the backward pass. Every tap is row-major,
/// one row per image.
///
/// # Shapes
/// Tap k M×D_k (for the §1 network: inputs M×784, conv0 M×6272 (14×14×32), conv1 M×3136
/// (7×7×64), fc M×1024 before its ReLU), `logits` and `probs` M×K.
#[derive(Default, Clone)]
pub struct Forward {
    acts: Acts,
    tap_layers: Vec<Option<usize>>,
}

impl Forward {
    /// A record for forward passes with no backward (reference sets, classifying): see
    /// [`Acts::inference`].
    pub fn inference() -> Self {
        Self {
            acts: Acts::inference(),
            tap_layers: Vec::new(),
        }
    }

    /// Images in the batch.
    pub fn m(&self) -> usize {
        self.acts.m
    }

    /// Number of taps.
    pub fn tap_count(&self) -> usize {
        self.tap_layers.len()
    }

    /// Tap k (0 is the input), M rows.
    pub fn tap(&self, k: usize) -> &[f32] {
        match self.tap_layers.get(k).copied().flatten() {
            None => &self.acts.input,
            Some(l) => self.acts.layer(l).unwrap_or(&[]),
        }
    }

    /// Every tap, in order.
    pub fn taps(&self) -> Vec<&[f32]> {
        (0..self.tap_count()).map(|k| self.tap(k)).collect()
    }

    pub fn inputs(&self) -> &[f32] {
        self.tap(0)
    }

    pub fn logits(&self) -> &[f32] {
        self.acts.logits()
    }

    pub fn probs(&self) -> &[f32] {
        &self.acts.probs
    }
}

/// Gradients of the cost arriving at each tap and at the logits; an empty vector means zero.
///
/// # Shapes
/// `taps[k]` as the matching [`Forward`] tap (M×D_k), `logits` M×K.
#[derive(Default, Clone)]
pub struct TapGrads {
    pub taps: Vec<Vec<f32>>,
    pub logits: Vec<f32>,
}

/// What the reference sets keep of each tap: its size per image and whether its sorted
/// columns are kept (hidden linear taps, whose distance may be taken per neuron).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapLayout {
    pub dims: Vec<usize>,
    pub columns: Vec<bool>,
}

impl TapLayout {
    /// The layout of the §1 network (inputs, conv0, conv1, fc; fc's columns kept).
    pub fn original() -> Self {
        Self::of(&crate::net::Arch::original(10).taps().unwrap_or_default())
    }

    /// The layout of `taps`.
    pub fn of(taps: &[crate::net::Tap]) -> Self {
        Self {
            dims: taps.iter().map(|t| t.dim).collect(),
            columns: taps
                .iter()
                .map(|t| t.kind == crate::net::TapKind::Linear)
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.dims.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dims.is_empty()
    }
}

impl FrozenCnn {
    /// p(label) of each image (`pixels`: N rows of the input, `labels`: N) as an 8-bit PNG
    /// stores it (clamped to [0, 1], rounded to 1/255), classified again.
    pub fn p_label_as_png(&self, pixels: &[f32], labels: &[u8]) -> Vec<f32> {
        let quantised: Vec<f32> = pixels
            .iter()
            .map(|&v| crate::data::to_u8(v) as f32 / 255.0)
            .collect();
        if quantised.is_empty() {
            return Vec::new();
        }
        let mut f = Forward::inference();
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
        Ok(Self::from_net(cnn.to_net()?))
    }

    /// The network `net`, frozen.
    pub fn from_net(net: Net) -> Self {
        let tap_layers = net.taps().iter().map(|t| t.after).collect();
        let names = net.taps().iter().map(|t| t.name.clone()).collect();
        Self {
            net,
            tap_layers,
            names,
        }
    }

    /// The network on the core.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.net.classes()
    }

    /// Values per input image (784 for a 28×28 grey image).
    /// The shape of one input image (channels, height, width).
    pub fn input_shape(&self) -> crate::net::Shape {
        self.net().arch().input
    }

    pub fn input_len(&self) -> usize {
        self.net.input_len()
    }

    /// The taps, in order.
    pub fn taps(&self) -> &[crate::net::Tap] {
        self.net.taps()
    }

    /// The taps' names (`inputs`, `conv0`, …), in order.
    pub fn names(&self) -> std::sync::Arc<[String]> {
        self.names.clone()
    }

    /// The taps' names, borrowed.
    pub fn tap_names(&self) -> &[String] {
        &self.names
    }

    /// What the reference sets keep of each tap.
    pub fn layout(&self) -> TapLayout {
        TapLayout::of(self.taps())
    }

    /// Runs the network on `x` (M rows of [`Self::input_len`] values), filling `f`.
    pub fn forward(&self, x: &[f32], f: &mut Forward) {
        f.tap_layers.clone_from(&self.tap_layers);
        self.net.forward(x, &mut f.acts);
    }

    /// d cost / d inputs (M rows) from the gradients at every tap of the forward `f`. Reuses
    /// `f`'s scratch buffers, so a step allocates no large buffer.
    pub fn backward(&self, f: &mut Forward, g: &TapGrads) -> Vec<f32> {
        let taps: Vec<&[f32]> = g.taps.iter().map(Vec::as_slice).collect();
        let want = Want {
            input: true,
            weights: false,
        };
        self.net
            .backward(&mut f.acts, &g.logits, &taps, want, &mut Vec::new())
    }
}
