//! The reference sets (ALGORITHM.md §2): the four taps of every training image of a label,
//! computed once per (model, label) and reused by every step.

use std::sync::Arc;

use super::frozen::{Forward, FrozenCnn};
use crate::data::{Dataset, PIXELS};
use crate::model::{CONV0_DIM, CONV1_DIM, FC_UNITS};

/// Flattened size of each tap: inputs, conv0, conv1, fc.
pub const TAP_DIMS: [usize; 4] = [PIXELS, CONV0_DIM, CONV1_DIM, FC_UNITS];

/// Images per forward pass while building: keeps the conv1 im2col buffer near 160 MB.
const BUILD_BATCH: usize = 256;

/// One label's reference activations.
///
/// # Shapes
/// `taps[k]` R×D_k row-major (R training images of the label, D_k = [`TAP_DIMS`]`[k]`),
/// `sq_norms[k]` R, `fc_sorted` 1024×R (each neuron's R training values, ascending).
pub struct LabelRefs {
    pub label: u8,
    /// Row r is training image `indices[r]` (its row in the MNIST training file).
    pub indices: Vec<u32>,
    pub taps: [Vec<f32>; 4],
    pub sq_norms: [Vec<f32>; 4],
    pub fc_sorted: Vec<f32>,
}

impl LabelRefs {
    /// Number of reference images R.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Runs every training image of `label` through the network. `progress` gets (done, R).
    pub fn build(
        net: &FrozenCnn,
        train: &Dataset,
        label: u8,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Self {
        let indices: Vec<u32> = (0..train.len() as u32)
            .filter(|&i| train.labels[i as usize] == label)
            .collect();
        let r = indices.len();
        let mut taps: [Vec<f32>; 4] = std::array::from_fn(|k| Vec::with_capacity(r * TAP_DIMS[k]));
        let mut f = Forward::default();
        for chunk in indices.chunks(BUILD_BATCH) {
            let idx: Vec<usize> = chunk.iter().map(|&i| i as usize).collect();
            net.forward(&train.batch_f32(&idx), &mut f);
            taps[0].extend_from_slice(&f.inputs);
            taps[1].extend_from_slice(&f.conv0);
            taps[2].extend_from_slice(&f.conv1);
            taps[3].extend_from_slice(&f.fc);
            progress(taps[0].len() / PIXELS, r);
        }
        Self::from_taps(label, indices, taps)
    }

    /// Derives the norms and the sorted fc columns from the four tap matrices.
    pub fn from_taps(label: u8, indices: Vec<u32>, taps: [Vec<f32>; 4]) -> Self {
        let r = indices.len();
        let sq_norms = std::array::from_fn(|k| {
            taps[k]
                .chunks_exact(TAP_DIMS[k])
                .map(|row| row.iter().map(|v| v * v).sum())
                .collect()
        });
        let mut fc_sorted = vec![0.0; FC_UNITS * r];
        for (j, col) in fc_sorted
            .chunks_exact_mut(r.max(1))
            .enumerate()
            .take(FC_UNITS)
        {
            for (i, v) in col.iter_mut().enumerate() {
                *v = taps[3][i * FC_UNITS + j];
            }
            col.sort_unstable_by(f32::total_cmp);
        }
        Self {
            label,
            indices,
            taps,
            sq_norms,
            fc_sorted,
        }
    }

    /// The sorted training values of fc neuron `j`.
    pub fn fc_column(&self, j: usize) -> &[f32] {
        let r = self.len();
        &self.fc_sorted[j * r..(j + 1) * r]
    }
}

/// Reference sets for the ten labels of one model, built on demand.
#[derive(Default)]
pub struct RefCache {
    labels: [Option<Arc<LabelRefs>>; 10],
}

impl RefCache {
    /// The reference set of `label`, building it first if needed.
    pub fn get_or_build(
        &mut self,
        net: &FrozenCnn,
        train: &Dataset,
        label: u8,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Arc<LabelRefs> {
        self.labels[label as usize]
            .get_or_insert_with(|| Arc::new(LabelRefs::build(net, train, label, progress)))
            .clone()
    }
}
