//! The pull of each kind of cost term on the pixels, image by image: what `backwork run
//! --trace` records every step to show why an image climbs, sags or thrashes (README,
//! "Why images thrash").

use serde::Serialize;

use super::cost::{GroupActs, group_cost};
use super::frozen::{Forward, FrozenCnn, TapGrads};
use super::refs::LabelRefs;
use super::settings::Settings;

/// One image's p(label) and the Euclidean norm, on its 784 pixels, of the gradient of the
/// softmax term, of the reference ("far from the training images") terms of all taps, and of
/// the similarity ("far from each other") terms of all taps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TermPull {
    pub p_label: f32,
    pub softmax: f32,
    pub prev: f32,
    pub sim: f32,
}

/// [`TermPull`] of each of the `x.len() / 784` images of one label group under `s`.
pub fn term_pulls(net: &FrozenCnn, refs: &LabelRefs, x: &[f32], s: &Settings) -> Vec<TermPull> {
    let px = net.input_len().max(1);
    let n = x.len() / px;
    let label = refs.label as usize;
    let only = |softmax: bool, prev: bool, sim: bool| {
        let mut t = s.clone();
        if !softmax {
            t.set_softmax_weight(0.0);
        }
        if !prev {
            t.prev_coeff = 0.0;
        }
        if !sim {
            t.sim_coeff = 0.0;
        }
        t
    };
    let mut out = vec![TermPull::default(); n];
    for (kind, t) in [
        only(true, false, false),
        only(false, true, false),
        only(false, false, true),
    ]
    .iter()
    .enumerate()
    {
        let mut f = Forward::default();
        net.forward(x, &mut f);
        let acts = GroupActs {
            n,
            taps: f.taps(),
            names: net.names(),
            probs: f.probs(),
            classes: net.classes(),
        };
        let gc = group_cost(&acts, refs, t);
        let probs = f.probs().to_vec();
        let g = net.backward(
            &mut f,
            &TapGrads {
                taps: gc.grads,
                logits: gc.g_logits,
            },
        );
        for (i, o) in out.iter_mut().enumerate() {
            let norm = g[i * px..(i + 1) * px]
                .iter()
                .map(|v| (*v as f64).powi(2))
                .sum::<f64>()
                .sqrt() as f32;
            match kind {
                0 => o.softmax = norm,
                1 => o.prev = norm,
                _ => o.sim = norm,
            }
            o.p_label = probs[i * net.classes() + label];
        }
    }
    out
}
