//! Commands that study a model's artifacts (issue 5): `worst` (the training images it
//! classifies worst) and `saliency` (which pixels raise p(label) most).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::AppArgs;
use crate::backwork::frozen::FrozenCnn;
use crate::backwork::saliency::{DEFAULT_TOP_K, top_k_mask};
use crate::data::{Dataset, PIXELS, SIDE, Split};
use crate::export::npy::{npy_bytes, read_images};
use crate::export::run::{prepare_dir, read_run};
use crate::export::worst::{WorstResults, write_worst};
use crate::export::{overlay_rgb, rgb_png_bytes, write_atomic};
use crate::model::weights::load_or_shipped;
use crate::model::worst::worst_images;

#[derive(Args, Debug)]
pub struct WorstArgs {
    /// Images per label.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Folder to write sheet.png and worst.json into (created if missing; must be empty
    /// unless --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a non-empty folder, replacing sheet.png and worst.json.
    #[arg(long)]
    pub force: bool,
}

/// `backwork worst`: classifies every training image and writes, per label, the k with the
/// lowest p(correct).
pub fn worst_cmd(a: WorstArgs, app: &AppArgs) -> Result<()> {
    if a.k == 0 {
        bail!("--k: must be at least 1");
    }
    prepare_dir(&a.out, a.force)?;
    let (cnn, info) = load_or_shipped(app.model.as_deref())?;
    let train = Dataset::load(app.data.as_deref(), Split::Train)?;
    let bar = ProgressBar::new(train.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} training images  [{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let labels = worst_images(&cnn, &train, a.k, &mut |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let results = WorstResults {
        labels: &labels,
        k: a.k,
        model: info.model_ref(),
        dataset: &train.source,
    };
    let files = write_worst(&a.out, &results, &train, a.force)?;
    for l in &labels {
        let line: Vec<String> = l
            .images
            .iter()
            .map(|w| format!("#{} {:.5}", w.index, w.p_correct))
            .collect();
        println!("label {}: {}", l.label, line.join("  "));
    }
    println!("wrote {} files to {}", files.len(), a.out.display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct SaliencyArgs {
    /// Images: .npy of f32, shape (N,28,28) or (N,784) (with --label).
    #[arg(
        long,
        value_name = "X.npy",
        conflicts_with = "from",
        requires = "label"
    )]
    pub inputs: Option<PathBuf>,
    /// Target label of every image of --inputs.
    #[arg(long)]
    pub label: Option<i64>,
    /// A run's folder (images.npy and results.json), each image with its own label.
    #[arg(long, value_name = "DIR", required_unless_present = "inputs")]
    pub from: Option<PathBuf>,
    /// Pixels in each mask: the k with the largest positive gradient.
    #[arg(long, default_value_t = DEFAULT_TOP_K)]
    pub top_k: usize,
    /// Folder to write into (created if missing; must be empty unless --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long)]
    pub force: bool,
}

/// `backwork saliency`: d p(label) / d input for each image, its top-k mask, and overlays.
pub fn saliency_cmd(a: SaliencyArgs, app: &AppArgs) -> Result<()> {
    let (x, labels) = match (&a.inputs, &a.from) {
        (Some(path), _) => {
            let label = a.label.unwrap_or(-1);
            if !(0..=9).contains(&label) {
                bail!("--label: {label} is outside 0..=9");
            }
            let (_, x) = read_images(path)?;
            let n = x.len() / PIXELS;
            (x, vec![label as u8; n])
        }
        (None, Some(dir)) => {
            let r = read_run(dir).map_err(anyhow::Error::msg)?;
            (r.images, r.labels)
        }
        (None, None) => bail!("give --inputs X.npy --label L, or --from DIR"),
    };
    if a.top_k == 0 || a.top_k > PIXELS {
        bail!("--top-k: {} is outside 1..=784", a.top_k);
    }
    prepare_dir(&a.out, a.force)?;
    let (cnn, _) = load_or_shipped(app.model.as_deref())?;
    let net = FrozenCnn::new(&cnn)?;
    let targets: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let s = net.saliency(&x, &targets);
    let mask = top_k_mask(&s, a.top_k);
    let n = labels.len();
    let put = |name: &str, bytes: &[u8]| write_atomic(&a.out.join(name), bytes, a.force);
    put("saliency.npy", &npy_bytes(&s, &[n, SIDE, SIDE]))?;
    let mask_f: Vec<f32> = mask.iter().map(|&m| f32::from(u8::from(m))).collect();
    put("mask.npy", &npy_bytes(&mask_f, &[n, SIDE, SIDE]))?;
    let mut counts = [0usize; 10];
    let mut summary = Vec::new();
    for i in 0..n {
        let l = labels[i];
        let px = &x[i * PIXELS..(i + 1) * PIXELS];
        let m = &mask[i * PIXELS..(i + 1) * PIXELS];
        let name = format!("saliency_label{l}_{:02}.png", counts[l as usize]);
        counts[l as usize] += 1;
        let png = rgb_png_bytes(SIDE as u32, SIDE as u32, &overlay_rgb(px, m))?;
        put(&name, &png)?;
        let top: Vec<usize> = (0..PIXELS).filter(|&j| m[j]).collect();
        summary.push(serde_json::json!({"label": l, "png": name, "top_pixels": top}));
    }
    let json = serde_json::json!({"top_k": a.top_k, "images": summary});
    put(
        "saliency.json",
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    println!(
        "wrote saliency.npy, mask.npy, saliency.json and {n} overlays to {}",
        a.out.display()
    );
    Ok(())
}
