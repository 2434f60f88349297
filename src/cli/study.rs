//! Commands that study a model's artifacts (issue 5): `worst` (the training images it
//! classifies worst), `saliency` (which pixels raise p(label) most) and `retrain` (train
//! again with the fooling images and measure old against new), and `ceiling` (how high
//! p(label) can go with pixels in [0, 1]).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::AppArgs;
use crate::backwork::cache::default_cache_dir;
use crate::backwork::ceiling::{Ceiling, MAX_STARTS, NoCeiling, box_ceiling};
use crate::backwork::frozen::FrozenCnn;
use crate::backwork::saliency::{DEFAULT_TOP_K, per_pixel, top_k_mask};
use crate::data::{Dataset, Split};
use crate::export::npy::{npy_bytes, read_images};
use crate::export::report::{RetrainReport, write_report};
use crate::export::run::read_run;
use crate::export::worst::{WorstResults, write_worst};
use crate::export::{overlay_rgb, rgb_png_bytes};
use crate::io::write_atomic;
use crate::model::train::TrainEvent;
use crate::model::weights::save_net;
use crate::model::worst::worst_images;
use crate::retrain::{
    Measurement, PAPER_IMAGES_PER_ROUND, PAPER_ROUNDS, RetrainConfig, RetrainError, RetrainEvent,
    RetrainMode, retrain,
};

#[derive(Args, Debug)]
pub struct WorstArgs {
    /// Images per label.
    #[arg(long, default_value_t = 8)]
    pub k: usize,
    /// Folder to write sheet.png and worst.json into (created if missing; must be empty
    /// unless --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a folder that is not empty: the files backwork writes there (an earlier output) are replaced as a whole; any other file is kept.
    #[arg(long)]
    pub force: bool,
}

/// `backwork worst`: classifies every training image and writes, per label, the k with the
/// lowest p(correct).
pub fn worst_cmd(a: WorstArgs, app: &AppArgs) -> Result<()> {
    // The sheet holds k tiles a row: 1,000 is already a 30,000-pixel-wide image.
    if !(1..=1000).contains(&a.k) {
        bail!("--k: {} is outside 1..=1000", a.k);
    }
    // Claimed at once (a bad --out fails before the work), written whole at the end.
    drop(super::claim_out(&a.out, a.force)?);
    let train = Dataset::load(app.data.as_deref(), Split::Train)?;
    let (net, info) = super::load_model(app, &train)?;
    let bar = ProgressBar::new(train.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} training images  [{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let labels = worst_images(&net, &train, a.k, &mut |done, _| {
        bar.set_position(done as u64);
        true
    });
    bar.finish_and_clear();
    let results = WorstResults {
        classes: &train.classes,
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
        super::out(format_args!("label {}: {}", l.label, line.join("  ")))?;
    }
    super::out(format_args!(
        "wrote {} files to {}",
        files.len(),
        crate::util::shown(&a.out)
    ))?;
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
    /// Target label of every image of --inputs: a class number, or the data's class name.
    #[arg(long)]
    pub label: Option<String>,
    /// A run's folder (images.npy and results.json), each image with its own label.
    #[arg(long, value_name = "DIR", required_unless_present = "inputs")]
    pub from: Option<PathBuf>,
    /// Pixels in each mask: the k with the largest positive gradient.
    #[arg(long, default_value_t = DEFAULT_TOP_K)]
    pub top_k: usize,
    /// Folder to write into (created if missing; must be empty unless --force).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a folder that is not empty: the files backwork writes there (an earlier output) are replaced as a whole; any other file is kept.
    #[arg(long)]
    pub force: bool,
}

/// `backwork saliency`: d p(label) / d input for each image, its top-k mask, and overlays.
pub fn saliency_cmd(a: SaliencyArgs, app: &AppArgs) -> Result<()> {
    // No data is needed: the images are the network's input shape.
    let (net, _) = super::load_net_with(app, app.model.as_deref())?;
    let shape = net.arch().input;
    let px = shape.len();
    let classes = net.classes();
    let (x, labels) = match (&a.inputs, &a.from) {
        (Some(path), _) => {
            let text = a.label.clone().unwrap_or_default();
            let label = match text.trim().parse::<i64>() {
                Ok(l) => l,
                // A class name: the data (`--data`, else MNIST) names the classes.
                Err(_) => {
                    let data = Dataset::load(app.data.as_deref(), Split::Test)?;
                    match data
                        .classes
                        .iter()
                        .position(|c| c.eq_ignore_ascii_case(text.trim()))
                    {
                        Some(l) => l as i64,
                        None => bail!(
                            "--label: {text:?} is not a class of {} ({})",
                            data.source,
                            data.classes.join(", ")
                        ),
                    }
                }
            };
            if label < 0 || label as usize >= classes {
                bail!(
                    "--label: {label} is outside 0..={} (the network has {classes} classes)",
                    classes - 1
                );
            }
            let (_, x) = read_images(path, &shape)?;
            let n = x.len() / px;
            (x, vec![label as u8; n])
        }
        (None, Some(dir)) => {
            let r = read_run(dir, &shape).map_err(anyhow::Error::msg)?;
            if let Some(l) = r.labels.iter().find(|&&l| l as usize >= classes) {
                bail!(
                    "--from {}: label {l} is not one of the network's {classes} classes",
                    dir.display()
                );
            }
            (r.images, r.labels)
        }
        (None, None) => bail!("give --inputs X.npy --label L, or --from DIR"),
    };
    let pixels = shape.h * shape.w;
    if a.top_k == 0 || a.top_k > pixels {
        bail!("--top-k: {} is outside 1..={pixels}", a.top_k);
    }
    // Checked at once (a bad --out fails before the work) and claimed for the writing only:
    // a signal during the computation, which ends the process, leaves nothing behind.
    drop(super::claim_out(&a.out, a.force)?);
    let net = FrozenCnn::from_net(net);
    let targets: Vec<usize> = labels.iter().map(|&l| l as usize).collect();
    let s = per_pixel(&net.saliency(&x, &targets), shape.c);
    let mask = top_k_mask(&s, pixels, a.top_k);
    let out = super::claim_out(&a.out, a.force)?;
    let n = labels.len();
    let put = |name: &str, bytes: &[u8]| {
        write_atomic(&out.staging().join(name), bytes, false).map_err(|e| out.in_dest(e))
    };
    put("saliency.npy", &npy_bytes(&s, &[n, shape.h, shape.w]))?;
    let mask_f: Vec<f32> = mask.iter().map(|&m| f32::from(u8::from(m))).collect();
    put("mask.npy", &npy_bytes(&mask_f, &[n, shape.h, shape.w]))?;
    let mut counts = [0usize; 256];
    let mut summary = Vec::new();
    for i in 0..n {
        let l = labels[i];
        let img = &x[i * px..(i + 1) * px];
        let m = &mask[i * pixels..(i + 1) * pixels];
        let name = format!("saliency_label{l}_{:02}.png", counts[l as usize]);
        counts[l as usize] += 1;
        let png = rgb_png_bytes(
            shape.w as u32,
            shape.h as u32,
            &overlay_rgb(img, shape.c, m),
        )?;
        put(&name, &png)?;
        let top: Vec<usize> = (0..pixels).filter(|&j| m[j]).collect();
        summary.push(serde_json::json!({"label": l, "png": name, "top_pixels": top}));
    }
    let json = serde_json::json!({"top_k": a.top_k, "images": summary});
    put(
        "saliency.json",
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )?;
    out.commit()?;
    super::out(format_args!(
        "wrote saliency.npy, mask.npy, saliency.json and {n} overlays to {}",
        crate::util::shown(&a.out)
    ))?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct RetrainArgs {
    /// A run's folder (images.npy and results.json): the fooling images of the first round.
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// How fooling images are labelled: 0.1 per digit (the original) or an 11th class.
    #[arg(long, value_enum)]
    pub mode: RetrainMode,
    /// Rounds of (train, measure); from the second on, the fooling images found against the
    /// newest model are added too [default: 1; 10 with --paper].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Fooling images found against each retrained model for the next round: 0 adds the
    /// measurement run's own images; N runs the same backwork with fresh seeds until N pass
    /// its threshold [default: 0; 6000 with --paper].
    #[arg(long, value_name = "N")]
    pub images_per_round: Option<usize>,
    /// Nguyen, Yosinski & Clune's protocol: 10 rounds, each adding 6,000 fooling images
    /// (about a class's worth) found against the newest model; --rounds and
    /// --images-per-round override either.
    #[arg(long)]
    pub paper: bool,
    /// Where to write the final model (never overwritten unless --force).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Folder for report.json and report.png (default: the folder of --out).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Epochs per round.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Adam learning rate of each round (1e-4: the original recipe's).
    #[arg(long, default_value_t = 1e-4, allow_hyphen_values = true)]
    pub lr: f64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Each fooling image appears this many times per epoch (1: appended once, as the
    /// original; 0: the control, the same training without them).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Train each round from fresh weights instead of fine-tuning the previous round's.
    #[arg(long)]
    pub from_scratch: bool,
    /// Step budget of the measurement runs (the same for every model).
    #[arg(long, default_value_t = 300)]
    pub budget: usize,
    /// Images per label of the measurement runs.
    #[arg(long, default_value_t = 8)]
    pub measure_batch: usize,
    /// Seed of the measurement runs (the same for every model) and of the training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Replace --out, report.json and report.png if they exist.
    #[arg(long)]
    pub force: bool,
}

/// `backwork retrain`: adds fooling images to the training set, trains again (round after
/// round), and reports old against new.
pub fn retrain_cmd(a: RetrainArgs, app: &AppArgs) -> Result<()> {
    let mut cfg = retrain_config(&a);
    cfg.validate()?;
    super::check_out_file("out", &a.out, Some(a.force))?;
    let report_dir = report_dir(&a)?;
    let train = Dataset::load(app.data.as_deref(), Split::Train)?;
    let test = Dataset::load(app.data.as_deref(), Split::Test)?;
    train.check_test_split(&test)?;
    let (net, info) = super::load_model(app, &train)?;
    // The report records the layer weights the measurement uses: the network's taps'.
    cfg.measure.fit_taps(net.taps().len());
    let fooling = read_run(&a.from, &train.shape).map_err(anyhow::Error::msg)?;
    let cancel = super::stop::stop_flag()?;
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let say = |bar: &ProgressBar, line: String| {
        if bar.is_hidden() {
            crate::util::say(format_args!("{line}"));
        } else {
            bar.println(line);
        }
    };
    let mut stage = String::new();
    let out = retrain(
        (&net, &info),
        &fooling.images,
        &cfg,
        &train,
        &test,
        default_cache_dir().as_deref(),
        &cancel,
        &mut |ev| {
            match ev {
            RetrainEvent::Stage { round, what } => {
                stage = format!("round {round}: {what}");
                say(&bar, stage.clone());
            }
            RetrainEvent::Train(TrainEvent::Batch {
                epoch,
                batch,
                batches,
                loss,
                images_per_s,
                ..
            }) => bar.set_message(format!(
                "{stage} · epoch {epoch} step {batch}/{batches} · loss {loss:.4} · {images_per_s:.0} images/s"
            )),
            RetrainEvent::Train(TrainEvent::Epoch {
                epoch,
                test_accuracy,
                ..
            }) => say(
                &bar,
                format!("  epoch {epoch}: test accuracy {:.2}%", test_accuracy * 100.0),
            ),
            RetrainEvent::Measure { step, budget } => {
                bar.set_message(format!("{stage} · step {step}/{budget}"));
            }
            RetrainEvent::Generate { found, wanted } => {
                bar.set_message(format!(
                    "{stage} · next round's fooling images: {found} of {wanted}"
                ));
            }
            RetrainEvent::Measured(m) => say(&bar, measurement_line(&m)),
        }
        },
    );
    bar.finish_and_clear();
    let out = match out {
        Err(RetrainError::Cancelled) => {
            return Err(super::stop::stopped(
                "before the first round finished; nothing written",
            ));
        }
        r => r?,
    };
    save_net(&out.net, &out.metadata, &a.out, a.force)?;
    let report = RetrainReport {
        backwork_version: env!("CARGO_PKG_VERSION"),
        config: &cfg,
        base_model: info.model_ref(),
        model_file: a.out.display().to_string(),
        date: crate::util::utc_now_iso(),
        rounds: &out.measurements,
    };
    write_report(&report_dir, &report, a.force)?;
    super::out(format_args!(
        "round  test acc  fooled   median steps  (budget {} steps, {} images)",
        a.budget,
        out.measurements.first().map_or(0, |m| m.images)
    ))?;
    for m in &out.measurements {
        super::out(format_args!("{}", measurement_line(m)))?;
    }
    super::out(format_args!(
        "wrote {}, and report.json and report.png in {}",
        crate::util::shown(&a.out),
        crate::util::shown(&report_dir)
    ))?;
    if out.is_stopped {
        return Err(super::stop::stopped(format!(
            "after round {}; wrote its model and the report of the rounds finished",
            out.measurements.len() - 1
        )));
    }
    Ok(())
}

/// The retraining's configuration from the command's flags.
fn retrain_config(a: &RetrainArgs) -> RetrainConfig {
    let mut cfg = RetrainConfig::new(a.mode);
    let (rounds, images) = if a.paper {
        (PAPER_ROUNDS, PAPER_IMAGES_PER_ROUND)
    } else {
        (1, 0)
    };
    cfg.rounds = a.rounds.unwrap_or(rounds);
    cfg.images_per_round = a.images_per_round.unwrap_or(images);
    cfg.repeat = a.repeat;
    cfg.from_scratch = a.from_scratch;
    cfg.train.epochs = a.epochs;
    cfg.train.lr = a.lr;
    cfg.train.batch_size = a.batch_size;
    cfg.train.seed = a.seed;
    cfg.measure.max_steps = Some(a.budget);
    cfg.measure.batch = a.measure_batch;
    cfg.measure.seed = a.seed;
    cfg
}

/// Where report.json and report.png go (`--report`, else the model's folder), checked to be
/// a writable folder without them (unless `--force`) before any training.
fn report_dir(a: &RetrainArgs) -> Result<PathBuf> {
    let dir = a
        .report
        .clone()
        .unwrap_or_else(|| crate::io::parent_dir(&a.out));
    if !dir.is_dir() {
        bail!("--report {}: not a folder", dir.display());
    }
    super::check_writable_dir(&dir).with_context(|| format!("--report {}", dir.display()))?;
    for f in ["report.json", "report.png"] {
        let p = dir.join(f);
        if p.exists() && !a.force {
            bail!(
                "{}: already exists (refusing to overwrite it; pass --force or --report DIR)",
                p.display()
            );
        }
    }
    Ok(dir)
}

/// One row of the report as text.
fn measurement_line(m: &Measurement) -> String {
    format!(
        "{:>5}  {:>7.2}%  {:>3}/{:<3}  {:>12}",
        m.round,
        m.test_accuracy * 100.0,
        m.reached,
        m.images,
        m.median_steps
            .map_or("-".to_string(), |s| format!("{s:.0}"))
    )
}

#[derive(Args, Debug)]
pub struct CeilingArgs {
    /// Labels to measure: all, or a list such as 0,3,7 [default: all].
    #[arg(long)]
    pub labels: Option<String>,
    /// Random starts per label (1 to 512).
    #[arg(long, default_value_t = 32)]
    pub starts: usize,
    /// Steps of the ascent from each start.
    #[arg(long, default_value_t = crate::backwork::settings::DEFAULT_STEP_BUDGET)]
    pub max_steps: usize,
    /// Seed of the starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The bar the closing line judges the labels against (the run's --threshold, whose
    /// default it is).
    #[arg(long, default_value = "0.999")]
    pub threshold: f64,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// `backwork ceiling`: how high p(label) can go with pixels in [0, 1], label by label
/// ([`box_ceiling`]): where a label's best is under the bar, no run passes it in the box.
pub fn ceiling_cmd(a: CeilingArgs, app: &AppArgs) -> Result<()> {
    if !(1..=MAX_STARTS).contains(&a.starts) {
        bail!("--starts: {} is outside 1..={MAX_STARTS}", a.starts);
    }
    if !(1..=1_000_000).contains(&a.max_steps) {
        bail!("--max-steps: {} is outside 1..=1000000", a.max_steps);
    }
    if !(a.threshold > 0.0 && a.threshold < 1.0) {
        bail!("--threshold: {} is not between 0 and 1", a.threshold);
    }
    // The engine's probabilities are f32: a bar that rounds to 0 or 1 there judges nothing.
    let threshold = a.threshold as f32;
    if !(threshold > 0.0 && threshold < 1.0) {
        bail!(
            "--threshold: {} rounds to {threshold} in the engine's precision (f32); give one that f32 holds strictly between 0 and 1",
            a.threshold
        );
    }
    let train = Dataset::load(app.data.as_deref(), Split::Train)?;
    let labels = super::backwork::resolve_labels("labels", a.labels.as_deref(), &train)?;
    let (net, info) = super::load_model(app, &train)?;
    let net = FrozenCnn::from_net(net);
    let cancel = super::stop::stop_flag()?;
    // Nothing to save: a stop signal ends it at once (the labels measured are printed).
    super::stop::exit_on_signal();
    let bar = ProgressBar::new((labels.len() * a.max_steps) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} label {msg}  [{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut found = Vec::with_capacity(labels.len());
    for &l in &labels {
        bar.set_message(train.class_name(usize::from(l)));
        let done = found.len() * a.max_steps;
        let got = box_ceiling(&net, l, a.starts, a.max_steps, a.seed, &cancel, &mut |t| {
            bar.set_position((done + t) as u64);
        });
        let c = match got {
            Ok(c) => c,
            Err(NoCeiling::Stopped) => {
                bar.finish_and_clear();
                return Err(super::stop::stopped(format!(
                    "{} of {} label(s) measured, nothing more printed",
                    found.len(),
                    labels.len()
                )));
            }
            Err(e) => {
                bar.finish_and_clear();
                bail!("{}: {e}", info.name);
            }
        };
        if !a.json {
            bar.suspend(|| super::out(format_args!("{}", ceiling_line(&c, a.starts))))?;
        }
        found.push(c);
    }
    bar.finish_and_clear();
    let under: Vec<u8> = found
        .iter()
        .filter(|c| c.best() <= threshold)
        .map(|c| c.label)
        .collect();
    if a.json {
        let labels: Vec<_> = found
            .iter()
            .map(|c| {
                serde_json::json!({
                    "label": c.label,
                    "best": c.best(),
                    "median": c.median(),
                    "past_0.999": c.past(0.999),
                    "past_0.9999": c.past(0.9999),
                    "p": c.ps,
                })
            })
            .collect();
        let json = serde_json::json!({
            "model": info.name,
            "starts": a.starts,
            "steps": a.max_steps,
            "seed": a.seed,
            "threshold": a.threshold,
            "under_threshold": under,
            "labels": labels,
        });
        super::out(format_args!("{json}"))?;
        return Ok(());
    }
    if under.is_empty() {
        super::out(format_args!(
            "every label's best is past {}: the box leaves room above the bar",
            a.threshold
        ))?;
    } else {
        super::out(format_args!(
            "label(s) {} never passed {} from any start: with pixels in [0, 1] no run is likely to pass them there on this network (a lower --threshold, or pixels \"none\", which a PNG cannot hold; a network trained on normalised images needs --input-mean/--input-std)",
            under
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            a.threshold
        ))?;
    }
    Ok(())
}

/// One label's line: its best and median p, and how many starts passed 0.999 and 0.9999.
fn ceiling_line(c: &Ceiling, starts: usize) -> String {
    format!(
        "label {}: best p {:.5}, median {:.5}; past 0.999 from {} of {starts} starts, past 0.9999 from {}",
        c.label,
        c.best(),
        c.median(),
        c.past(0.999),
        c.past(0.9999)
    )
}
