//! The training images the network classifies worst, per label (the post's second figure):
//! for each label, the k images of that label with the lowest p(correct), worst first.

use super::eval::EVAL_BATCH;
use crate::data::Dataset;
pub use crate::meta::{WorstImage, WorstLabel};

/// Classifies every image of `data` and keeps, per label, the `k` with the lowest
/// p(correct) (ties: lower index first). `progress` gets (done, total) after each batch and
/// returns whether to go on (stopped early, the result covers the images done).
pub fn worst_images(
    net: &crate::net::Net,
    data: &Dataset,
    k: usize,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Vec<WorstLabel> {
    let n = data.len();
    let k_classes = net.classes();
    let mut per_label: Vec<Vec<WorstImage>> = vec![Vec::new(); data.num_classes()];
    let mut start = 0;
    while start < n {
        let end = (start + EVAL_BATCH).min(n);
        let x = data.range_f32(start, end);
        for (i, probs) in net
            .probs(&x, EVAL_BATCH)
            .chunks_exact(k_classes)
            .enumerate()
        {
            let index = start + i;
            let label = data.labels[index] as usize;
            if label >= per_label.len() {
                per_label.resize(label + 1, Vec::new());
            }
            let predicted = crate::net::kernels::argmax(probs);
            per_label[label].push(WorstImage {
                index,
                p_correct: probs.get(label).copied().unwrap_or(0.0),
                predicted,
            });
        }
        start = end;
        if !progress(start, n) {
            break;
        }
    }
    per_label
        .into_iter()
        .enumerate()
        .map(|(label, mut images)| {
            images.sort_by(|a, b| {
                a.p_correct
                    .total_cmp(&b.p_correct)
                    .then(a.index.cmp(&b.index))
            });
            images.truncate(k);
            WorstLabel {
                label: label as u8,
                images,
            }
        })
        .collect()
}
