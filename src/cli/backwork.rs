//! The engine's commands: `run`, `cost` and `bench backwork`, sharing one set of settings flags.
//!
//! Longer than 500 lines: the three commands share the settings flags, the model and data
//! loading and the run's output; split apart they would each repeat that glue.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::backwork::cache::{RefCache, default_cache_dir};
use crate::backwork::cost::streamed_cost;
use crate::backwork::engine::{EndReason, Engine, StepEvent};
use crate::backwork::frozen::FrozenCnn;
use crate::backwork::measure::{Short, box_hint};
use crate::backwork::refs::LabelRefs;
use crate::backwork::settings::DEFAULT_STEP_BUDGET;
use crate::backwork::trace::term_pulls;
use crate::backwork::{
    FcDistance, Init, PixelConstraint, Preset, Settings, SoftmaxTerm, StallMode,
};
use crate::data::{Dataset, Split};
use crate::export::npy::{npy_bytes, read_images, read_start_images_noted};
use crate::export::run::{ExportImage, RunResults, export_images, write_run_files};
use crate::io::outdir::OutDir;
use crate::io::write_atomic;

use super::AppArgs;

/// The settings flags shared by `run`, `cost`, `bench backwork` and `sweep`; unset flags keep
/// the preset's values (`--preset`, default `robust`). The values are kept as text so that
/// `sweep` can read each one as a comma-separated list of values (see [`SettingsArgs::grid`]).
#[derive(Args, Debug, Clone, Default)]
pub struct SettingsArgs {
    /// Start from a preset: robust (the default) or original (the 2016 method exactly);
    /// any other flag overrides it.
    #[arg(long, value_name = "robust|original")]
    pub preset: Option<String>,
    /// Weight of the "far from the training images" terms [default: 0.5].
    #[arg(long, allow_hyphen_values = true)]
    pub prev_coeff: Option<String>,
    /// Weight of the "far from each other" terms [default: 0.5].
    #[arg(long, allow_hyphen_values = true)]
    pub sim_coeff: Option<String>,
    /// Layer weights, one per tap of the network and then the softmax's: for the shipped
    /// network inputs,conv0,conv1,fc,softmax [default: 1e-5,1e-4,1e-3,1e-2,10; other networks:
    /// 1e-5 at the input, ten times more a tap up to 1e-2, then 10] (sweep: alternatives
    /// separated by ';').
    #[arg(long, value_name = "W,W,…", allow_hyphen_values = true)]
    pub layer_weights: Option<String>,
    /// The softmax term: margin (the log-odds ln((1 − p)/p), robust), prob (1 − p, the
    /// original) or log (−ln p) [default: margin].
    #[arg(long, value_name = "margin|prob|log")]
    pub softmax_term: Option<String>,
    /// Adam learning rate on the pixels [default: 0.08; original 0.01].
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<String>,
    /// fc reference distance: per-neuron (the original) or per-example [default: per-neuron].
    #[arg(long, value_name = "MODE")]
    pub fc_distance: Option<String>,
    /// Pixel constraint: clip to 0..1 after each step, or none (the original) [default: clip].
    #[arg(long, value_name = "MODE")]
    pub pixels: Option<String>,
    /// Probes of non-increasing p(label) that re-initialise an image [default: 20; original 5].
    #[arg(long)]
    pub reinit_window: Option<String>,
    /// Only images with p(label) below this are re-initialised; under --stall hybrid, a stalled image whose best is below it starts afresh, one past it is perturbed [default: 0.99].
    #[arg(long, allow_hyphen_values = true)]
    pub reinit_cap: Option<String>,
    /// Stop when every image's p(label) exceeds this [default: 0.999].
    #[arg(long, allow_hyphen_values = true)]
    pub threshold: Option<String>,
    /// Probe every this many steps [default: 1].
    #[arg(long)]
    pub save_freq: Option<String>,
    /// Images per label [default: 8].
    #[arg(long, allow_hyphen_values = true)]
    pub batch: Option<String>,
    /// Target labels: all, or a list such as 0,3,7 [default: all].
    #[arg(long, value_name = "all|L,L,...")]
    pub labels: Option<String>,
    /// Seed of the initial noise and of every re-initialisation [default: 0].
    #[arg(long, alias = "seeds", allow_hyphen_values = true)]
    pub seed: Option<String>,
    /// Stop after this many steps [default for `run`: 1500; with --keep-going the run goes
    /// on to it].
    #[arg(long, allow_hyphen_values = true)]
    pub max_steps: Option<String>,
    /// Stall rule: off (the original), reinit, perturb (noise added; the run ends on the best image each image reached), or hybrid (fresh noise while an image's best is below the reinit cap, perturb once it has reached it) [default: hybrid].
    #[arg(long, value_name = "MODE")]
    pub stall: Option<String>,
    /// Probes without improvement that make an image stalled [default: 15].
    #[arg(long)]
    pub stall_window: Option<String>,
    /// Smallest rise of the best p(label) that counts as improvement [default: 1e-4].
    #[arg(long, allow_hyphen_values = true)]
    pub stall_tol: Option<String>,
    /// Amplitude of the perturb noise [default: 0.2].
    #[arg(long, allow_hyphen_values = true)]
    pub stall_noise: Option<String>,
    /// Under perturb and hybrid: after this many perturbations in a row that did not raise an image's best, its next stall starts it from fresh noise (its best kept); 0: never [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub stall_restart: Option<String>,
    /// Where the images start: noise (uniform [0, 1)), class-means (means of groups of the
    /// label's training images), or a .npy file of (labels·batch, 28, 28) images, group-major
    /// [default: noise].
    #[arg(long, value_name = "noise|class-means|FILE.npy")]
    pub init: Option<String>,
}

/// Parses one flag's value as a `T`, naming the flag on failure.
fn parse_flag<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T> {
    v.trim()
        .parse::<T>()
        .map_err(|_| anyhow::anyhow!("--{flag}: {v:?} is not a valid value"))
}

impl SettingsArgs {
    /// Every flag that holds a setting, by name, with its value (the preset first, so that a
    /// sweep's grid lists it first).
    pub fn fields_mut(&mut self) -> [(&'static str, &mut Option<String>); 22] {
        [
            ("preset", &mut self.preset),
            ("prev-coeff", &mut self.prev_coeff),
            ("sim-coeff", &mut self.sim_coeff),
            ("layer-weights", &mut self.layer_weights),
            ("softmax-term", &mut self.softmax_term),
            ("lr", &mut self.lr),
            ("fc-distance", &mut self.fc_distance),
            ("pixels", &mut self.pixels),
            ("reinit-window", &mut self.reinit_window),
            ("reinit-cap", &mut self.reinit_cap),
            ("threshold", &mut self.threshold),
            ("save-freq", &mut self.save_freq),
            ("batch", &mut self.batch),
            ("labels", &mut self.labels),
            ("init", &mut self.init),
            ("max-steps", &mut self.max_steps),
            ("stall", &mut self.stall),
            ("stall-window", &mut self.stall_window),
            ("stall-tol", &mut self.stall_tol),
            ("stall-noise", &mut self.stall_noise),
            ("stall-restart", &mut self.stall_restart),
            ("seed", &mut self.seed),
        ]
    }

    /// The settings these flags describe, over the preset; checked.
    pub fn settings(&self, max_steps_default: Option<usize>) -> Result<Settings> {
        let mut s = Settings::default();
        if let Some(p) = &self.preset {
            let preset = Preset::parse(p.trim())
                .with_context(|| format!("--preset: {p:?} is not one of robust, original"))?;
            preset.apply(&mut s);
        }
        macro_rules! take {
            ($field:ident, $flag:literal) => {
                if let Some(v) = &self.$field {
                    s.$field = parse_flag($flag, v)?;
                }
            };
        }
        take!(prev_coeff, "prev-coeff");
        take!(sim_coeff, "sim-coeff");
        take!(lr, "lr");
        take!(reinit_window, "reinit-window");
        take!(reinit_cap, "reinit-cap");
        take!(threshold, "threshold");
        // Below 1 as typed but 1 in f32 (0.99999999): said as typed, not as "got 1".
        if let Some(v) = &self.threshold
            && s.threshold == 1.0
            && v.trim().parse::<f64>().is_ok_and(|t| t < 1.0)
        {
            bail!(
                "--threshold: {} is closer to 1 than 32-bit floats tell apart (at most 0.9999999)",
                v.trim()
            );
        }
        take!(save_freq, "save-freq");
        take!(seed, "seed");
        take!(stall_window, "stall-window");
        take!(stall_tol, "stall-tol");
        take!(stall_noise, "stall-noise");
        take!(stall_restart, "stall-restart");
        if let Some(m) = &self.stall {
            s.stall = match m.trim() {
                "off" => StallMode::Off,
                "reinit" => StallMode::Reinit,
                "perturb" => StallMode::Perturb,
                "hybrid" => StallMode::Hybrid,
                _ => bail!("--stall: {m:?} is not off, reinit, perturb or hybrid"),
            };
        }
        if let Some(m) = &self.softmax_term {
            s.softmax_term = match m.trim() {
                "log" => SoftmaxTerm::Log,
                "prob" => SoftmaxTerm::Prob,
                "margin" => SoftmaxTerm::Margin,
                _ => bail!("--softmax-term: {m:?} is not log, prob or margin"),
            };
        }
        if let Some(b) = &self.batch {
            let b: i64 = parse_flag("batch", b)?;
            if b < 1 {
                bail!("--batch: must be at least 1, got {b}");
            }
            s.batch = b as usize;
        }
        if let Some(w) = &self.layer_weights {
            let v: Vec<f32> = w
                .split(',')
                .map(|p| p.trim().parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--layer-weights: {w:?} is not comma-separated numbers (one per tap, then the softmax's)"
                    )
                })?;
            if v.len() < 2 {
                bail!(
                    "--layer-weights: expected one number per tap and the softmax's (5 for the shipped network: inputs,conv0,conv1,fc,softmax), got {}",
                    v.len()
                );
            }
            s.layer_weights = v;
        }
        if let Some(m) = &self.fc_distance {
            s.fc_distance = match m.trim() {
                "per-neuron" => FcDistance::PerNeuron,
                "per-example" => FcDistance::PerExample,
                _ => bail!("--fc-distance: {m:?} is not per-neuron or per-example"),
            };
        }
        if let Some(m) = &self.pixels {
            s.pixels = match m.trim() {
                "clip" => PixelConstraint::Clip,
                "none" => PixelConstraint::None,
                _ => bail!("--pixels: {m:?} is not clip or none"),
            };
        }
        // The labels are resolved against the data's classes once it is loaded (fit_to).
        if let Some(i) = &self.init {
            s.init = match i.trim() {
                "noise" => Init::Noise,
                "class-means" => Init::ClassMeans,
                "" => bail!("--init: give noise, class-means or a .npy file"),
                f => Init::File(PathBuf::from(f)),
            };
        }
        s.max_steps = match &self.max_steps {
            Some(m) => Some(parse_flag("max-steps", m)?),
            None => max_steps_default,
        };
        s.validate()?;
        Ok(s)
    }

    /// The flags as a sweep grid: each flag's value split into its alternatives (at ',', or
    /// at ';' for `--layer-weights` and `--labels`, whose single values hold commas), and
    /// one `SettingsArgs` per point of their product, in a fixed order (the first flag of
    /// [`SettingsArgs::fields_mut`] varies slowest).
    /// Fits `s` to the taps of `net`: the layer weights given must be one per tap plus the
    /// softmax's (else an error naming the taps); without `--layer-weights`, a network with
    /// other taps than the §1 network's gets its defaults.
    /// Fits `s` to the network and the data: one layer weight per tap (an explicit
    /// `--layer-weights` is checked, else the defaults are fitted), and the labels `--labels`
    /// names (all by default; numbers or the data's class names) checked against the data's
    /// classes.
    pub fn fit_to(&self, s: &mut Settings, net: &FrozenCnn, data: &Dataset) -> Result<()> {
        if self.layer_weights.is_some() {
            s.validate_taps(net.tap_names())?;
        } else {
            s.fit_taps(net.tap_names().len());
        }
        s.labels = resolve_labels("labels", self.labels.as_deref(), data)?;
        Ok(())
    }

    pub fn grid(&self) -> Vec<SettingsArgs> {
        let mut points = vec![self.clone()];
        let names: Vec<&'static str> = self.clone().fields_mut().map(|(n, _)| n).to_vec();
        for (k, name) in names.iter().enumerate() {
            let sep = if matches!(*name, "layer-weights" | "labels") {
                ';'
            } else {
                ','
            };
            let Some(value) = self.clone().fields_mut()[k].1.clone() else {
                continue;
            };
            let alternatives: Vec<String> =
                value.split(sep).map(|v| v.trim().to_string()).collect();
            points = points
                .into_iter()
                .flat_map(|p| {
                    alternatives.iter().map(move |alt| {
                        let mut q = p.clone();
                        *q.fields_mut()[k].1 = Some(alt.clone());
                        q
                    })
                })
                .collect();
        }
        points
    }
}

/// The labels `text` names among `data`'s classes: every class with training images when
/// `None` or "all", else each item a class name (any case) or a class number. A class
/// without training images is refused (there is nothing for its images to stay far from).
/// `flag` names the option in errors.
pub fn resolve_labels(flag: &str, text: Option<&str>, data: &Dataset) -> Result<Vec<u8>> {
    resolve(flag, text, data, false)
}

/// The one label `text` names (`cost --label`): a class number or name; "all" and lists are
/// refused with a hint that offers neither.
pub fn resolve_one_label(flag: &str, text: &str, data: &Dataset) -> Result<u8> {
    match resolve(flag, Some(text), data, true)?[..] {
        [l] => Ok(l),
        _ => bail!("--{flag}: name one label, not {text:?}"),
    }
}

fn resolve(flag: &str, text: Option<&str>, data: &Dataset, one: bool) -> Result<Vec<u8>> {
    let classes = &data.classes;
    let forms = if one {
        "one class number, such as 3, or a class name"
    } else {
        "all, a list such as 0,3,7, or class names"
    };
    if one && text.is_some_and(|t| t.trim() == "all" || t.contains(',')) {
        bail!(
            "--{flag}: name one label, not {:?} (use {forms})",
            text.unwrap_or_default()
        );
    }
    let counts = data.label_counts();
    let n = classes.len().min(256);
    let has_images = |l: usize| counts.get(l).is_some_and(|&c| c > 0);
    let text = match text.map(str::trim) {
        None | Some("all") => {
            let all: Vec<u8> = (0..n).filter(|&l| has_images(l)).map(|l| l as u8).collect();
            if all.is_empty() {
                bail!("--data {}: no class has training images", data.source);
            }
            return Ok(all);
        }
        Some(t) => t,
    };
    let mut out: Vec<u8> = Vec::new();
    for p in text.split(',').map(str::trim) {
        // A name first: a folder may be called "10" and sort as label 2.
        let l = match classes.iter().position(|c| c.eq_ignore_ascii_case(p)) {
            Some(v) => v,
            None => match p.parse::<usize>() {
                Ok(v) if v < n => v,
                Ok(v) => bail!(
                    "--{flag}: label {v} is outside 0..={} (the data has {n} classes)",
                    n.saturating_sub(1)
                ),
                // A number too long for the machine is out of range too, not "not a label".
                Err(_) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => bail!(
                    "--{flag}: label {p} is outside 0..={} (the data has {n} classes)",
                    n.saturating_sub(1)
                ),
                Err(_) => bail!(
                    "--{flag}: {p:?} is not a label (use {forms}: {})",
                    classes.join(", ")
                ),
            },
        };
        if !has_images(l) {
            bail!(
                "--{flag}: label {l} ({}) has no training images in {}",
                data.class_name(l),
                data.source
            );
        }
        if out.contains(&(l as u8)) {
            bail!("--{flag}: label {l} is named twice");
        }
        out.push(l as u8);
    }
    if out.is_empty() {
        bail!("--{flag}: name at least one label");
    }
    Ok(out)
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Folder for the images, images.npy, results.json and sheet.png.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Write into a folder that is not empty: the files backwork writes there (an earlier output) are replaced as a whole; any other file is kept. Also replaces an existing --trace FILE.
    #[arg(long)]
    pub force: bool,
    /// Also write FILE (JSON lines): every step, each image's p(label) and the norm on its
    /// pixels of the softmax term's gradient, of the reference terms' and of the similarity
    /// terms', and the images re-initialised (best with one label: it costs three extra
    /// passes a step). FILE appears whole when the run ends; an existing FILE is refused
    /// unless --force.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Go on after every image passed the threshold, to the step budget: the fooled images
    /// go on under the cost (farther from the training images and from each other), where
    /// the method stops. results.json says so ("keep_going").
    #[arg(long)]
    pub keep_going: bool,
}

#[derive(Args, Debug)]
pub struct CostArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Images to evaluate: .npy of f32, shape (N,28,28) or (N,784).
    #[arg(long, value_name = "X.npy")]
    pub inputs: PathBuf,
    /// Target label: a class number, or the data's class name.
    #[arg(long)]
    pub label: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write d total / d inputs here, in the shape of the inputs.
    #[arg(long, value_name = "G.npy")]
    pub grad_out: Option<PathBuf>,
}

/// The reference sets of `labels`, from the disk cache where it has them (see
/// [`default_cache_dir`]), with a progress bar.
pub fn build_refs(
    net: &FrozenCnn,
    train: &Dataset,
    model_sha: &str,
    labels: &[u8],
    cancel: &AtomicBool,
) -> Result<Vec<Arc<LabelRefs>>> {
    let mut cache = match default_cache_dir() {
        Some(dir) => RefCache::with_disk(dir, model_sha, train),
        None => RefCache::default(),
    };
    let bar = ProgressBar::new(labels.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("reference sets {bar:20} {pos}/{len} labels {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    cache.preload(train, labels, &net.layout(), cancel);
    let mut refs = Vec::with_capacity(labels.len());
    for &l in labels {
        bar.set_message(format!("(label {l})"));
        let built = cache.get_or_build(net, train, l, cancel);
        for notice in cache.take_notices() {
            bar.suspend(|| crate::util::say(format_args!("notice: {notice}")));
        }
        let Some((r, _)) = built else {
            bar.finish_and_clear();
            return Err(super::stop::stopped(
                "while building the reference sets, before any image was made",
            ));
        };
        refs.push(r);
        bar.inc(1);
    }
    // The last set's save: its notices are said here, before the run.
    cache.flush();
    for notice in cache.take_notices() {
        bar.suspend(|| crate::util::say(format_args!("notice: {notice}")));
    }
    bar.finish_and_clear();
    Ok(refs)
}

pub fn run_cmd(a: RunArgs, app: &AppArgs) -> Result<()> {
    let settings = a.settings.settings(Some(DEFAULT_STEP_BUDGET))?;
    // The folder is checked (and made) before the long work, so a bad --out fails at once;
    // a run that fails before writing anything leaves no empty folder behind.
    // The folder is claimed before the long work, so a bad --out fails at once; the files
    // go into a staging folder swapped into place at the end (see `OutDir`): a run that
    // fails before writing leaves the folder as it was (or no folder).
    // Checked before the folder is claimed and the reference sets built (minutes, cold).
    if let Some(p) = &a.trace {
        Trace::check(p, a.force)?;
    }
    let out = super::claim_out(&a.out, a.force)?;
    run_into(a, app, settings, out)
}

fn run_into(a: RunArgs, app: &AppArgs, settings: Settings, out: OutDir) -> Result<()> {
    let train = Dataset::load(app.data.as_deref(), Split::Train)?;
    let (net, info) = super::load_model(app, &train)?;
    let net = FrozenCnn::from_net(net);
    let mut settings = settings;
    a.settings.fit_to(&mut settings, &net, &train)?;
    // Start images are read before the long work, so a bad file fails at once.
    let start = match &settings.init {
        Init::File(path) => {
            let rows = settings.labels.len() * settings.batch;
            let (x, note) = read_start_images_noted(path, rows, &train.shape).context("--init")?;
            if let Some(n) = note {
                crate::util::say(format_args!("notice: --init {n}"));
            }
            Some(x)
        }
        _ => None,
    };
    let cancel = super::stop::stop_flag()?;
    let refs = build_refs(&net, &train, &info.sha256, &settings.labels, &cancel)?;
    let png_net = net.clone();
    let mut engine = Engine::new(net, &refs, settings.clone())?;
    engine.set_endless(a.keep_going);
    if let Some(x) = &start {
        engine.set_images(x)?;
    }

    let mut trace = match &a.trace {
        Some(p) => Some(Trace::create(p, a.force, engine.images().to_vec())?),
        None => None,
    };
    let bar = ProgressBar::new(settings.max_steps.unwrap_or(DEFAULT_STEP_BUDGET) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps {per_sec} | {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    let mut reinits = 0usize;
    let started = Instant::now();
    let end = loop {
        if cancel.load(Ordering::Relaxed) {
            engine.cancel();
            break EndReason::Cancelled;
        }
        let ev = match engine.step() {
            Ok(ev) => ev,
            // Said once, at the end, after the images are written.
            Err(e) => break EndReason::Error(e.to_string()),
        };
        reinits += ev.reinits.len();
        if let Some(t) = &mut trace
            && !t.write_step(&engine, &png_net, &ev)
        {
            crate::util::say(format_args!(
                "warning: --trace {}: cannot write; the run goes on without its trace (none is left)",
                crate::util::shown(&t.path)
            ));
            trace = None;
        }
        bar.set_position(ev.step as u64);
        let mins: Vec<String> = engine
            .label_summaries()
            .iter()
            .map(|s| format!("{}:{:.4}", s.label, s.min_p))
            .collect();
        bar.set_message(format!("min p {} | reinits {reinits}", mins.join(" ")));
        if let Some(r) = ev.end {
            break r;
        }
    };
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();

    let mut images = export_images(engine.rows(), settings.threshold, None, |x, l| {
        png_net.p_label_as_png(x, l)
    });
    crate::export::run::set_classes(&mut images, &train.classes);
    let results = RunResults {
        backwork_version: env!("CARGO_PKG_VERSION"),
        preset: settings.preset_name(),
        settings: &settings,
        seed: settings.seed,
        model: info.model_ref(),
        steps: engine.steps(),
        keep_going: engine.is_endless(),
        end_reason: end_text(&end),
        date: crate::util::utc_now_iso(),
        image_shape: png_net.input_shape(),
        classes: &train.classes,
        images: &images,
    };
    write_run_files(out.staging(), &results).map_err(|e| out.in_dest(e))?;
    out.commit()?;
    // After the images: a run ended before they are in place leaves no trace either (a trace
    // put in place first outlived a second Ctrl-C's abort and blocked the next run).
    if let Some(t) = trace {
        t.finish()?;
    }
    report_run(
        &images,
        &end,
        &settings,
        engine.steps(),
        (elapsed, reinits),
        &a.out,
    );
    if let EndReason::Error(e) = end {
        // The engine's words say the last good images are kept; the summary said where.
        bail!("the run failed: {e}");
    }
    if end == EndReason::Cancelled {
        return Err(super::stop::stopped(format!(
            "wrote the images as they were at step {} to {}",
            engine.steps(),
            a.out.display()
        )));
    }
    Ok(())
}

/// `run --trace`: one JSON line per step with each image's pull of every term kind on the
/// pixels, how far it moved, and the images re-initialised.
/// The file is written beside `path` under a hidden name and renamed into place when the run
/// ends: it appears whole or not at all, and never replaces a file unless `--force`.
struct Trace {
    out: std::io::BufWriter<std::fs::File>,
    /// The file asked for.
    path: PathBuf,
    /// The hidden file written until [`Trace::finish`] (removed if it never comes).
    partial: PathBuf,
    /// The images of the step before.
    prev: Vec<f32>,
    /// Whether the file may replace one at `path` (`--force`).
    force: bool,
    /// The hidden file, for a process that must end at once.
    _pending: crate::io::abandon::Pending,
}

impl Trace {
    /// Fails if the trace may not be written at `path`: a folder, or a file without `force`.
    fn check(path: &Path, force: bool) -> Result<()> {
        if let Some(why) = crate::io::folder_problem(&crate::io::parent_dir(path)) {
            bail!("--trace {}: {why}", path.display());
        }
        if let Some(l) = crate::io::link_loop(path) {
            bail!(
                "--trace {}: {}",
                path.display(),
                crate::io::link_loop_words(&l)
            );
        }
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => bail!("--trace {}: is a folder", path.display()),
            Ok(_) if !force => bail!(
                "--trace {}: already exists (refusing to overwrite it; --force replaces it)",
                path.display()
            ),
            _ => Ok(()),
        }
    }

    fn create(path: &Path, force: bool, prev: Vec<f32>) -> Result<Self> {
        let context = || format!("--trace {}", path.display());
        Self::check(path, force)?;
        let name = path
            .file_name()
            .with_context(|| format!("--trace {}: not a file name", path.display()))?
            .to_string_lossy();
        let partial =
            path.with_file_name(format!(".{name}.backwork-{}.partial", std::process::id()));
        let pending = crate::io::abandon::Pending::new(vec![crate::io::abandon::Leftover::File(
            partial.clone(),
        )]);
        let file = std::fs::File::create(&partial).with_context(context)?;
        Ok(Self {
            out: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
            partial,
            prev,
            force,
            _pending: pending,
        })
    }

    /// Flushes the file to the disk and puts it in place.
    fn finish(mut self) -> Result<()> {
        let context = || format!("--trace {}", self.path.display());
        self.out.flush().with_context(context)?;
        self.out.get_ref().sync_all().with_context(context)?;
        // Without --force a file that appeared meanwhile (another run's trace) is kept.
        match crate::io::place_file(&self.partial, &self.path, self.force) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                "--trace {}: a file appeared there during the run; it was kept and this trace was not written (--force replaces it)",
                self.path.display()
            ),
            r => r.with_context(context)?,
        }
        self.partial = PathBuf::new();
        Ok(())
    }

    /// Writes the line of step `ev`; false when the file cannot be written.
    fn write_step(&mut self, engine: &Engine, net: &FrozenCnn, ev: &StepEvent) -> bool {
        let n = engine.batch();
        let x = engine.images();
        let px = net.input_len();
        let pulls: Vec<_> = engine
            .groups()
            .iter()
            .enumerate()
            .flat_map(|(g, grp)| {
                term_pulls(
                    net,
                    &grp.refs,
                    &x[g * n * px..(g + 1) * n * px],
                    engine.settings(),
                )
            })
            .collect();
        let reinit_rows: Vec<usize> = ev.reinits.iter().map(|r| r.image).collect();
        // How far each image moved since the step before (root mean square per pixel):
        // Adam's step, small when its second moment remembers larger gradients.
        let moved: Vec<f32> = x
            .chunks_exact(px)
            .zip(self.prev.chunks_exact(px))
            .map(|(a, b)| {
                let ss: f32 = a.iter().zip(b).map(|(u, v)| (u - v) * (u - v)).sum();
                (ss / px as f32).sqrt()
            })
            .collect();
        self.prev = x.to_vec();
        let line = serde_json::json!({"step": ev.step, "images": pulls, "moved": moved, "reinits": reinit_rows});
        writeln!(self.out, "{line}").is_ok()
    }
}

/// The run's summary on stdout: how it ended, how many images passed, and each one that
/// did not.
fn report_run(
    images: &[ExportImage],
    end: &EndReason,
    settings: &Settings,
    steps: usize,
    (elapsed, reinits): (f64, usize),
    out: &Path,
) {
    let reached = images.iter().filter(|i| i.reached_threshold).count();
    // Not println!: after SIGHUP the terminal may be gone, and the run is already written.
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        stdout,
        "{}: {reached} of {} images reached p(label) > {} in {} steps ({:.1} s, {reinits} reinitialisations); wrote {}",
        end_text(end),
        images.len(),
        settings.threshold,
        steps,
        elapsed,
        crate::util::shown(out)
    );
    for i in images.iter().filter(|i| !i.reached_threshold) {
        let _ = writeln!(
            stdout,
            "  not reached: label {} image {} (p = {:.5}, {} reinits)",
            i.label, i.index, i.p_label, i.reinits
        );
    }
    if *end == EndReason::MaxSteps {
        let short: Vec<Short> = images
            .iter()
            .filter(|i| !i.reached_threshold)
            .map(|i| Short {
                label: i.label,
                p: i.p_label,
                reinits: i.reinits,
            })
            .collect();
        if let Some(hint) = box_hint(&short, settings) {
            let _ = writeln!(stdout, "  hint: {}", hint.text);
        }
    }
}

fn end_text(end: &EndReason) -> String {
    match end {
        EndReason::Threshold => "threshold reached".into(),
        EndReason::MaxSteps => "max steps reached".into(),
        EndReason::Cancelled => "cancelled".into(),
        EndReason::Error(e) => format!("error: {e}"),
    }
}

pub fn cost_cmd(a: CostArgs, app: &AppArgs) -> Result<()> {
    let mut settings = a.settings.settings(None)?;
    if let Some(g) = &a.grad_out {
        super::check_out_file("grad-out", g, None)?;
    }
    let train = Dataset::load(app.data.as_deref(), Split::Train)?;
    // A class number or name, as `--labels` takes them.
    let label = resolve_one_label("label", &a.label, &train)?;
    let (net, info) = super::load_model(app, &train)?;
    let net = FrozenCnn::from_net(net);
    a.settings.fit_to(&mut settings, &net, &train)?;
    settings.labels = vec![label];
    settings.validate()?;
    let (shape, x) = read_images(&a.inputs, &train.shape)?;
    let n = x.len() / train.image_len();
    // From the disk cache, as `run` does: a script that calls `cost` in a loop pays for the
    // reference set once.
    let cancel = super::stop::stop_flag()?;
    let refs = build_refs(&net, &train, &info.sha256, &[label], &cancel)?
        .pop()
        .context("no reference set was built")?;
    // The rest is one long computation with nothing to keep if stopped.
    super::stop::exit_on_signal();
    if refs.is_empty() {
        bail!("--label {label}: the training set has no image of this label");
    }
    // In chunks, two passes (see `streamed_cost`): memory does not grow with the images.
    let (terms, grad) = streamed_cost(&net, &x, &refs, &settings, a.grad_out.is_some());
    // Finite pixels can still overflow f32 on the way (values near 3.4e38): said, not shown.
    let named = terms.named();
    let broken = named
        .iter()
        .find(|(_, v)| !v.is_finite())
        .map(|(k, _)| k.clone())
        .or_else(|| {
            grad.as_ref()
                .is_some_and(|g| g.iter().any(|v| !v.is_finite()))
                .then(|| "its gradient".to_string())
        });
    if let Some(what) = broken {
        let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        bail!(
            "--inputs {}: the cost of these images is not finite ({what} overflows; their pixels reach {peak:e}); nothing was written",
            a.inputs.display()
        );
    }
    if let (Some(path), Some(g)) = (&a.grad_out, &grad) {
        write_atomic(path, &npy_bytes(g, &shape), false)?;
    }
    if a.json {
        let mut obj = serde_json::Map::new();
        for (k, v) in &named {
            obj.insert(k.clone(), serde_json::json!(v));
        }
        obj.insert("clamped".into(), serde_json::json!(terms.clamped));
        obj.insert("n".into(), serde_json::json!(n));
        obj.insert("label".into(), serde_json::json!(label));
        super::out(format_args!("{}", serde_json::Value::Object(obj)))?;
    } else {
        for (k, v) in &named {
            super::out(format_args!("{k:>18} {v:.6e}"))?;
        }
        if !terms.clamped.is_empty() {
            super::out(format_args!("clamped: {}", terms.clamped.join(", ")))?;
        }
    }
    Ok(())
}

/// Peak resident memory of this process in MB (VmHWM), where /proc has it.
fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn bench_backwork(
    s: &SettingsArgs,
    steps: usize,
    app: &AppArgs,
    model: Option<&Path>,
) -> Result<()> {
    if steps == 0 {
        bail!("--steps: must be at least 1");
    }
    let mut base = s.settings(None)?;
    let train = Dataset::load(app.data.as_deref(), Split::Train)?;
    let net = FrozenCnn::from_net(super::load_model_at(app, model, &train)?.0);
    s.fit_to(&mut base, &net, &train)?;
    // Built from scratch, never read from the disk cache: this times the computation.
    let t = Instant::now();
    let all: Vec<u8> = (0..train.num_classes().min(256) as u8).collect();
    let mut cache = RefCache::default();
    let cancel = super::stop::stop_flag()?;
    let mut refs: Vec<Arc<LabelRefs>> = Vec::new();
    for &l in &all {
        match cache.get_or_build(&net, &train, l, &cancel) {
            Some((r, _)) => refs.push(r),
            None => return Err(super::stop::stopped("before any step was timed")),
        }
    }
    let cache_s = t.elapsed().as_secs_f64();
    // (ms per step, share of the reference rows the pruned searches read)
    let time_steps = |labels: Vec<u8>| -> Result<(f64, f64)> {
        let settings = Settings {
            labels,
            max_steps: None,
            ..base.clone()
        };
        let mut e = Engine::new(net.clone(), &refs, settings)?;
        // The bench times steps of the whole batch, not convergence: no group ever finishes.
        e.set_endless(true);
        e.step()?; // warm-up: first-touch allocations
        let t = Instant::now();
        for _ in 0..steps {
            if cancel.load(Ordering::Relaxed) {
                return Err(super::stop::stopped(
                    "before the timing ended; nothing measured",
                ));
            }
            e.step()?;
        }
        let ms = 1000.0 * t.elapsed().as_secs_f64() / steps as f64;
        let (read, full) = e.search_rows();
        Ok((ms, read as f64 / full.max(1) as f64))
    };
    let (step_ms_10x8, search_share) = time_steps(all.clone())?;
    let (step_ms_1x8, _) = time_steps(vec![base.labels[0]])?;
    let json = serde_json::json!({
        "bench": "backwork",
        "step_ms_10x8": step_ms_10x8,
        "step_ms_1x8": step_ms_1x8,
        "search_read_share_10x8": search_share,
        "cache_s": cache_s,
        "peak_rss_mb": peak_rss_mb(),
        "steps_timed": steps,
        "batch": base.batch,
        "threads": candle_core::utils::get_num_threads(),
    });
    super::out(format_args!("{json}"))?;
    Ok(())
}

impl Drop for Trace {
    fn drop(&mut self) {
        if !self.partial.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
