//! Test-set evaluation: overall and per-class accuracy.

use serde::Serialize;

use super::{CandleResult, Cnn};
use crate::data::Dataset;
use crate::net::{Acts, Net};

/// Images per forward pass during evaluation: large enough to keep the matrix products
/// efficient, small enough that a batch's activations (about 200 KB an image for the original
/// network) stay in the last-level cache between layers.
pub const EVAL_BATCH: usize = 128;

/// Correct predictions, overall and per label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    pub correct: usize,
    pub total: usize,
    /// One count per class of the data.
    pub per_class_correct: Vec<usize>,
    pub per_class_total: Vec<usize>,
}

/// The JSON `backwork eval --json` prints.
#[derive(Serialize)]
pub struct EvalReport {
    pub accuracy: f64,
    pub correct: usize,
    pub total: usize,
    /// Accuracy on the test images of each class, in label order.
    pub per_class: Vec<f64>,
}

impl Evaluation {
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }

    pub fn class_accuracy(&self, label: usize) -> f64 {
        let c = self.per_class_correct.get(label).copied().unwrap_or(0);
        c as f64 / self.per_class_total.get(label).copied().unwrap_or(0).max(1) as f64
    }

    pub fn report(&self) -> EvalReport {
        EvalReport {
            accuracy: self.accuracy(),
            correct: self.correct,
            total: self.total,
            per_class: (0..self.per_class_total.len())
                .map(|l| self.class_accuracy(l))
                .collect(),
        }
    }
}

/// Classifies every image of `data` (arg-max of the output) and counts the correct ones.
/// `progress` gets (done, total) after each batch.
pub fn evaluate(
    cnn: &Cnn,
    data: &Dataset,
    progress: &mut dyn FnMut(usize, usize),
) -> CandleResult<Evaluation> {
    Ok(evaluate_net(&cnn.to_net()?, data, progress))
}

/// [`evaluate`] of a network on the core.
pub fn evaluate_net(
    net: &Net,
    data: &Dataset,
    progress: &mut dyn FnMut(usize, usize),
) -> Evaluation {
    let mut ev = Evaluation {
        correct: 0,
        total: 0,
        per_class_correct: vec![0; data.num_classes()],
        per_class_total: vec![0; data.num_classes()],
    };
    let n = data.len();
    let k = net.classes();
    let mut acts = Acts::inference();
    let mut start = 0;
    while start < n {
        let end = (start + EVAL_BATCH).min(n);
        net.forward(&data.range_f32(start, end), &mut acts);
        for (z, &l) in acts.logits().chunks_exact(k).zip(&data.labels[start..end]) {
            let l = l as usize;
            if l >= ev.per_class_total.len() {
                ev.per_class_total.resize(l + 1, 0);
                ev.per_class_correct.resize(l + 1, 0);
            }
            ev.per_class_total[l] += 1;
            if crate::net::kernels::argmax(z) == l {
                ev.per_class_correct[l] += 1;
                ev.correct += 1;
            }
            ev.total += 1;
        }
        progress(end, n);
        start = end;
    }
    ev
}
