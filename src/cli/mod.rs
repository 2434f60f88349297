//! The command line: clap commands, each calling into the core and printing its result.

pub mod backwork;
pub mod stop;
pub mod study;
pub mod sweep;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::{Dataset, Split};
use crate::meta::{InputNormSpec, ModelInfo};
use crate::model::train::{TrainConfig, TrainEvent, train};
use crate::model::weights::{WeightInit, load_net_or_shipped, save_net};
use crate::net::{Arch, Net, Shape};

/// backwork: find and study fooling images of an MNIST CNN.
///
/// With no command it opens the window.
#[derive(Parser, Debug)]
#[command(name = "backwork", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub app: AppArgs,
}

/// Options of the window (no command given).
#[derive(Args, Debug, Clone, Default)]
pub struct AppArgs {
    /// Weights file to open instead of the shipped model (`train`: the network to go on
    /// training, instead of fresh weights): safetensors, a PyTorch state_dict (.pt) of the
    /// ALGORITHM.md §1 network, or ONNX (.onnx).
    #[arg(long, value_name = "FILE", global = true)]
    pub model: Option<PathBuf>,
    /// Folder of IDX files (raw or .gz) to use instead of the embedded MNIST.
    #[arg(long, value_name = "DIR", global = true)]
    pub data: Option<PathBuf>,
    /// The input normalisation the network was trained with, as torchvision's
    /// Normalize(mean, std) (with --input-std): the network takes (x − MEAN) / STD where the
    /// images hold x in [0, 1]. One value, or one per channel, comma-separated (0.1307 for
    /// most MNIST code).
    #[arg(long, value_name = "MEAN", global = true, allow_hyphen_values = true)]
    pub input_mean: Option<String>,
    /// The standard deviation of the input normalisation (with --input-mean): 0.3081 for most
    /// MNIST code.
    #[arg(long, value_name = "STD", global = true)]
    pub input_std: Option<String>,
    /// Open the window and start the default run at once.
    #[arg(long)]
    pub autostart: bool,
    /// Rewrite FILE every second with frame statistics as JSON
    /// ({"frames", "p50_ms", "p99_ms", "engine_steps_per_s"}).
    #[arg(long, value_name = "FILE")]
    pub frame_stats: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a new network and save it as safetensors.
    Train(TrainArgs),
    /// Print the overall and per-class test accuracy of a model.
    Eval(EvalArgs),
    /// Optimise random images into fooling images and write them to a folder.
    Run(backwork::RunArgs),
    /// Evaluate every cost term (and optionally its gradient) for given images.
    Cost(backwork::CostArgs),
    /// The training images the model classifies worst, per label (sheet.png, worst.json).
    Worst(study::WorstArgs),
    /// Which pixels raise p(label) most: the gradient, its top-k mask, overlays.
    Saliency(study::SaliencyArgs),
    /// Train again with fooling images (uniform soft labels or an 11th class), round after
    /// round, and report old against new (report.json, report.png).
    Retrain(study::RetrainArgs),
    /// Run a grid of headless runs (models × settings × seeds), one line of runs.jsonl per
    /// run; a stopped sweep resumes, shards split it across machines, --merge joins them.
    Sweep(sweep::SweepArgs),
    /// How high p(label) can go with pixels in [0, 1]: ascent on the log-odds alone from
    /// many random starts, label by label (where a label's best is under the bar, no run
    /// passes it in the box).
    Ceiling(study::CeilingArgs),
    /// The reference-set cache on disk: list its models and sizes, or clear it.
    Cache {
        #[command(subcommand)]
        what: CacheWhat,
    },
    /// Measure speed (prints JSON).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Where to write the weights (never overwritten unless --force).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Passes over the training set.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Images per Adam step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Adam learning rate of the first epoch.
    #[arg(long, default_value_t = TrainConfig::default().lr, allow_hyphen_values = true)]
    pub lr: f64,
    /// Multiply the learning rate by this after each epoch.
    #[arg(long, default_value_t = TrainConfig::default().lr_decay, allow_hyphen_values = true)]
    pub lr_decay: f64,
    /// Seed of the initial weights and the shuffling.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Train on only the first N training images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// How the fresh weights are drawn: `original` (the TensorFlow tutorial's truncated normal,
    /// std 0.1, biases 0.1) or `uniform` (PyTorch's ±1/√fan_in).
    #[arg(long, value_enum, default_value_t = TrainConfig::default().init)]
    pub init: WeightInit,
    /// The network to train: `original` (ALGORITHM.md §1, the default), `lenet5`, or a JSON
    /// file describing one (README, "The network description").
    #[arg(long, value_name = "ARCH|FILE.json")]
    pub arch: Option<String>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum CacheWhat {
    /// Each model's reference sets in the cache folder: size, labels, last use.
    List,
    /// Remove every reference set (and temporary file) from the cache folder.
    Clear,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Training throughput (images/s) on the training set.
    Train {
        /// Adam steps to time.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        #[arg(long, default_value_t = TrainConfig::default().batch_size)]
        batch_size: usize,
    },
    /// Inference throughput (images/s) over the whole test set.
    Eval,
    /// Where the time goes: milliseconds per batch in each layer, forward and backward, for
    /// inference (a batch of 128, as `bench eval`), training (a batch of 64, weight
    /// gradients, as `bench train`) and the engine's gradient to the input (a batch of 80,
    /// the 10 × 8 figure's).
    Layers {
        /// Passes to time per profile, after one untimed pass.
        #[arg(long, default_value_t = 20)]
        steps: usize,
    },
    /// Engine speed: ms per step of the 10×8 figure and of 1×8, reference-cache build time,
    /// peak memory.
    Backwork {
        #[command(flatten)]
        settings: Box<backwork::SettingsArgs>,
        /// Steps to time after one warm-up step, every image kept running (100: about the
        /// length of the default figure's run; the first steps, from fresh noise, cost most).
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Output is always one JSON object; accepted for symmetry with the other commands.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a command; the caller prints the error.
pub fn run(command: Command, app: &AppArgs) -> Result<()> {
    // The long commands take SIGINT, SIGTERM and SIGHUP from their first instant, so a signal
    // while data loads still ends in a clean stop at their first check.
    if matches!(
        command,
        Command::Train(_)
            | Command::Run(_)
            | Command::Cost(_)
            | Command::Retrain(_)
            | Command::Sweep(_)
            | Command::Ceiling(_)
            | Command::Bench { .. }
    ) {
        stop::stop_flag()?;
    }
    // The reference-set cache's cap, read by every command that builds or lists reference
    // sets: a value that is not a size is refused before any work, not ignored.
    if !matches!(command, Command::Train(_) | Command::Eval(_)) {
        crate::backwork::cache::cache_cap().map_err(|e| anyhow::anyhow!(e))?;
    }
    match command {
        Command::Train(a) => train_cmd(a, app),
        Command::Eval(a) => eval_cmd(a, app),
        Command::Run(a) => backwork::run_cmd(a, app),
        Command::Cost(a) => backwork::cost_cmd(a, app),
        Command::Worst(a) => study::worst_cmd(a, app),
        Command::Saliency(a) => study::saliency_cmd(a, app),
        Command::Retrain(a) => study::retrain_cmd(a, app),
        Command::Sweep(a) => sweep::sweep_cmd(a, app),
        Command::Ceiling(a) => study::ceiling_cmd(a, app),
        Command::Cache { what } => cache_cmd(what),
        Command::Bench { what } => bench_cmd(what, app),
    }
}

fn cache_cmd(what: CacheWhat) -> Result<()> {
    use crate::backwork::cache::{cache_cap_bytes, clear_cache, default_cache_dir, list_cache};
    let Some(dir) = default_cache_dir() else {
        bail!("no cache folder: set BACKWORK_CACHE_DIR, XDG_CACHE_HOME or HOME");
    };
    let gb = |b: u64| b as f64 / 1e9;
    match what {
        CacheWhat::List => {
            let list = list_cache(&dir).with_context(|| format!("{}", dir.display()))?;
            let total: u64 = list.iter().map(|e| e.bytes).sum();
            out(format_args!(
                "{}: {} model(s), {:.2} GB (cap {:.1} GB, BACKWORK_CACHE_MAX_GB)",
                crate::util::shown(&dir),
                list.len(),
                gb(total),
                gb(cache_cap_bytes())
            ))?;
            for e in &list {
                let age = e.newest.elapsed().map_or(0, |d| d.as_secs());
                out(format_args!(
                    "  {}  {:>2} label(s)  {:>6.2} GB  last used {} ago",
                    e.stem,
                    e.files.len(),
                    gb(e.bytes),
                    crate::util::format_duration(age as f64)
                ))?;
            }
        }
        CacheWhat::Clear => {
            let (files, bytes) = clear_cache(&dir).with_context(|| format!("{}", dir.display()))?;
            out(format_args!(
                "{}: removed {files} file(s), {:.2} GB",
                crate::util::shown(&dir),
                gb(bytes)
            ))?;
        }
    }
    Ok(())
}

/// The split of `--data` (or the embedded MNIST); a split with no image is refused (a model
/// trained on nothing, or an accuracy of 0 / 0, would be nonsense with exit 0).
fn load_data(app: &AppArgs, split: Split) -> Result<Dataset> {
    let d = Dataset::load(app.data.as_deref(), split)?;
    if d.is_empty() {
        let which = match split {
            Split::Train => "training",
            Split::Test => "test",
        };
        bail!("--data {}: the {which} set holds no images", d.source);
    }
    Ok(d)
}

/// Writes one line of a command's output to standard output; a failed write (a full disk
/// behind `>`, a closed descriptor) is an error naming it, where `println!` panicked.
pub(crate) fn out(line: std::fmt::Arguments) -> Result<()> {
    use std::io::Write;
    writeln!(std::io::stdout(), "{line}")
        .map_err(|e| anyhow::anyhow!("cannot write to standard output: {e}"))
}

/// Claims an output folder given as `--out` ([`crate::io::outdir::OutDir::claim`]); its errors name the flag,
/// as every command's do.
pub(crate) fn claim_out(out: &Path, force: bool) -> Result<crate::io::outdir::OutDir> {
    crate::io::outdir::OutDir::claim(out, force).map_err(|e| anyhow::anyhow!("--out {e}"))
}

/// Fails early (before hours of work) if file `out` (given as `--<flag>`) exists or its
/// folder cannot take a file. `force`: whether the command has `--force` and it was given
/// (`None`: the command has no such flag, so an existing file is simply refused).
pub(crate) fn check_out_file(flag: &str, out: &Path, force: Option<bool>) -> Result<()> {
    if out.is_dir() {
        bail!(
            "--{flag} {}: is a folder, expected a file name",
            out.display()
        );
    }
    // Said before the work, not when its result is saved: a loop of links or a name the
    // OS refuses was "already exists" or "File name too long" after a whole training.
    if let Err(e) = std::fs::metadata(out) {
        match e.raw_os_error() {
            Some(libc::ELOOP) => bail!(
                "--{flag} {}: {}",
                out.display(),
                crate::io::link_loop_words(&crate::io::link_loop(out).unwrap_or(out.into()))
            ),
            Some(libc::ENAMETOOLONG) => {
                bail!(
                    "--{flag} {}: {}",
                    out.display(),
                    crate::io::too_long_words(out)
                )
            }
            _ => {}
        }
    }
    // The file is written beside itself under a longer temporary name first.
    if out
        .file_name()
        .is_some_and(|n| n.len() > crate::io::MAX_OUT_NAME)
    {
        bail!(
            "--{flag} {}: the file's name is longer than backwork can write ({} bytes; at most {})",
            out.display(),
            out.file_name().map_or(0, |n| n.len()),
            crate::io::MAX_OUT_NAME
        );
    }
    // A link (even one to nothing) is something there.
    if std::fs::symlink_metadata(out).is_ok() && force != Some(true) {
        let hint = if force.is_some() {
            "; pass --force to replace it"
        } else {
            "; choose another name"
        };
        bail!(
            "--{flag} {}: already exists (refusing to overwrite it{hint})",
            out.display()
        );
    }
    let dir = crate::io::parent_dir(out);
    if let Some(why) = crate::io::folder_problem(&dir) {
        bail!("--{flag} {}: {why}", out.display());
    }
    check_writable_dir(&dir).with_context(|| format!("--{flag} {}", out.display()))
}

/// Fails if a file cannot be created in `dir` (tried with an empty file, removed at once).
pub(crate) fn check_writable_dir(dir: &Path) -> Result<()> {
    let probe = dir.join(format!(".backwork-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| {
        anyhow::anyhow!(
            "the folder {} is not writable ({})",
            dir.display(),
            e.kind()
        )
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The architecture `--arch` names: a built-in one (`original`, `lenet5`, `small-rgb`) for
/// images of `input` in `classes` classes, or a JSON file of [`Arch`] (at most 1 MB), checked
/// whole.
pub fn parse_arch(text: &str, input: Shape, classes: usize) -> Result<Arch> {
    if let Some(a) = Arch::builtin(text, classes) {
        return Ok(a.with_input(input));
    }
    let path = Path::new(text);
    if !text.ends_with(".json") && !path.exists() {
        bail!("--arch: {text:?} is not original, lenet5, small-rgb or a JSON file");
    }
    let bytes = crate::io::read_regular_max(path, 1 << 20)
        .map_err(|e| anyhow::anyhow!("--arch {}: cannot read: {e}", path.display()))?;
    let arch: Arch = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!("--arch {}: not a network description: {e}", path.display())
    })?;
    arch.params()
        .map_err(|e| anyhow::anyhow!("--arch {}: {e}", path.display()))?;
    Ok(arch)
}

fn train_cmd(a: TrainArgs, app: &AppArgs) -> Result<()> {
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        lr: a.lr,
        lr_decay: a.lr_decay,
        seed: a.seed,
        limit: a.limit,
        init: a.init,
    };
    cfg.validate()?;
    check_out_file("out", &a.out, Some(a.force))?;
    let train_set = load_data(app, Split::Train)?;
    let test_set = load_data(app, Split::Test)?;
    train_set.check_test_split(&test_set)?;

    let cancel = stop::stop_flag()?;

    // --model: go on training that network (its architecture, classes and weights) instead
    // of a fresh one.
    let start = match &app.model {
        Some(p) => Some(load_net_with(app, Some(p))?),
        None => None,
    };
    let init = match (&start, &a.arch) {
        (Some(_), Some(_)) => {
            bail!("--arch: a network continued from --model keeps its own architecture")
        }
        (Some((net, _)), None) => net.clone(),
        (None, arch) => {
            let (input, classes) = (train_set.shape, train_set.num_classes());
            let arch = match arch {
                Some(text) => parse_arch(text, input, classes)?,
                None => Arch::original(classes).with_input(input),
            };
            let params = crate::net::init::init_params(&arch, cfg.seed, cfg.init)
                .map_err(|e| anyhow::anyhow!("--arch: {e}"))?;
            let mut fresh =
                Net::from_torch(arch, params).map_err(|e| anyhow::anyhow!("--arch: {e}"))?;
            // Trained on normalised images, as PyTorch code with Normalize trains; the file
            // records it, so every later use applies it.
            if let Some(spec) = input_norm(app)? {
                crate::net::InputNorm::new(&spec.mean, &spec.std, fresh.arch().input.c)
                    .and_then(|n| fresh.set_input_norm(Some(n)))
                    .map_err(|e| anyhow::anyhow!("--input-mean/--input-std: {e}"))?;
            }
            fresh
        }
    };
    if let Err(e) = crate::model::fits_data(&init, &train_set) {
        bail!("--arch: {e} ({})", train_set.source);
    }

    let bar = train_bar(&cfg, train_set.len());
    let started = Instant::now();
    let outcome = crate::model::train::train_net(
        init,
        &train_set,
        &test_set,
        &cfg,
        None,
        &cancel,
        &mut |ev| show_train_event(&bar, ev, cfg.epochs),
    )?;
    bar.finish_and_clear();

    let mut meta = outcome.metadata(
        &cfg,
        &train_set.source,
        started.elapsed().as_secs_f64(),
        &format!("backwork {} train", env!("CARGO_PKG_VERSION")),
    );
    if let Some((_, info)) = &start {
        meta.insert(
            "continued_from".into(),
            format!("{} (sha256 {})", info.name, info.sha256),
        );
    }
    save_net(&outcome.net, &meta, &a.out, a.force)?;
    let acc = outcome
        .test_accuracy
        .map_or("not measured".into(), |a| format!("{:.2}%", a * 100.0));
    let line = format!(
        "saved {} ({} full epoch(s), test accuracy {acc}, {:.0} s)",
        crate::util::shown(&a.out),
        outcome.epochs_completed,
        started.elapsed().as_secs_f64()
    );
    if outcome.is_cancelled {
        return Err(stop::stopped(line));
    }
    out(format_args!("{line}"))?;
    Ok(())
}

/// The progress bar of training `cfg` on `len` images.
fn train_bar(cfg: &TrainConfig, len: usize) -> ProgressBar {
    let n = cfg.limit.map_or(len, |l| l.min(len));
    let batches = n.div_ceil(cfg.batch_size);
    let bar = ProgressBar::new((batches * cfg.epochs) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} steps  {msg}  [{elapsed_precise}, ETA {eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

/// Shows a training event: a step on the bar, an epoch as a line.
fn show_train_event(bar: &ProgressBar, ev: TrainEvent, epochs: usize) {
    match ev {
        TrainEvent::Batch {
            epoch,
            loss,
            running_accuracy,
            images_per_s,
            ..
        } => {
            bar.inc(1);
            bar.set_message(format!(
                "epoch {epoch}/{}  loss {loss:.4}  acc {:.2}%  {images_per_s:.0} img/s",
                epochs,
                running_accuracy * 100.0
            ));
        }
        TrainEvent::Epoch {
            epoch,
            mean_loss,
            test_accuracy,
        } => {
            let line = format!(
                "epoch {epoch}: mean loss {mean_loss:.4}, test accuracy {:.2}%",
                test_accuracy * 100.0
            );
            // A hidden bar (output not a terminal) drops println: scripts still get the line.
            if bar.is_hidden() {
                crate::util::say(format_args!("{line}"));
            } else {
                bar.println(line);
            }
        }
    }
}

/// The network of `path` (any architecture), or the shipped one, checked to fit `data`
/// (its image shape and classes).
/// `--input-mean` and `--input-std`, checked: both or neither.
pub(crate) fn input_norm(app: &AppArgs) -> Result<Option<InputNormSpec>> {
    match (&app.input_mean, &app.input_std) {
        (None, None) => Ok(None),
        (Some(m), Some(s)) => InputNormSpec::parse(m, s)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("--input-mean/--input-std: {e}")),
        (Some(_), None) => bail!("--input-mean: give --input-std with it"),
        (None, Some(_)) => bail!("--input-std: give --input-mean with it"),
    }
}

/// The network at `path`, or the shipped one, taking its inputs normalised as
/// `--input-mean`/`--input-std` say when given.
pub(crate) fn load_net_with(app: &AppArgs, path: Option<&Path>) -> Result<(Net, ModelInfo)> {
    let spec = input_norm(app)?;
    let (mut net, mut info) = load_net_or_shipped(path)?;
    if let Some(spec) = spec {
        crate::model::weights::set_input_norm(&mut net, &mut info, Some(&spec)).map_err(|e| {
            anyhow::anyhow!(
                "--input-mean/--input-std: {}: {e}",
                crate::util::one_line(&info.name)
            )
        })?;
    }
    Ok((net, info))
}

pub(crate) fn load_model_at(
    app: &AppArgs,
    path: Option<&Path>,
    data: &Dataset,
) -> Result<(Net, ModelInfo)> {
    let (net, info) = load_net_with(app, path)?;
    crate::model::fits_data(&net, data)
        .map_err(|e| anyhow::anyhow!("{}: {e} ({})", info.name, data.source))?;
    Ok((net, info))
}

/// The network of `--model`, or the shipped one ([`load_model_at`]).
pub(crate) fn load_model(app: &AppArgs, data: &Dataset) -> Result<(Net, ModelInfo)> {
    load_model_at(app, app.model.as_deref(), data)
}

fn eval_cmd(a: EvalArgs, app: &AppArgs) -> Result<()> {
    let test = load_data(app, Split::Test)?;
    let (net, info) = load_model(app, &test)?;
    let ev = crate::model::eval::evaluate_net(&net, &test, &mut |_, _| {});
    if a.json {
        out(format_args!("{}", serde_json::to_string(&ev.report())?))?;
    } else {
        out(format_args!("model:    {}", info.name))?;
        if let Some(how) = info.read_by_shape() {
            out(format_args!("weights:  read by shape: {how}"))?;
        }
        if let Some(n) = info.input_norm().ok().flatten() {
            out(format_args!("inputs:   normalised, {}", n.summary()))?;
        }
        out(format_args!(
            "data:     {} (test split, {} images)",
            test.source,
            test.len()
        ))?;
        out(format_args!(
            "accuracy: {:.2}% ({} / {})",
            ev.accuracy() * 100.0,
            ev.correct,
            ev.total
        ))?;
        for l in 0..ev.per_class_total.len() {
            out(format_args!(
                "  {}: {:6.2}% ({} / {})",
                crate::util::one_line(&test.class_name(l)),
                ev.class_accuracy(l) * 100.0,
                ev.per_class_correct[l],
                ev.per_class_total[l]
            ))?;
        }
    }
    Ok(())
}

/// `bench layers`: the per-layer profile of inference, training and the input gradient.
fn bench_layers(app: &AppArgs, steps: usize, threads: usize) -> Result<serde_json::Value> {
    use crate::net::{Acts, Targets, Want, cross_entropy};
    if steps == 0 {
        bail!("--steps: must be at least 1");
    }
    let train_set = load_data(app, Split::Train)?;
    let (net, _) = load_model(app, &train_set)?;
    let k = net.classes();
    // (name, batch, a record keeping patches, the backward's wants).
    let profiles = [
        ("inference", 128, false, None),
        (
            "training",
            TrainConfig::default().batch_size,
            true,
            Some(Want {
                input: false,
                weights: true,
            }),
        ),
        (
            "input_gradient",
            80,
            false,
            Some(Want {
                input: true,
                weights: false,
            }),
        ),
    ];
    let mut out = serde_json::Map::new();
    let mut grads = net.zero_grads();
    for (name, batch, keep, want) in profiles {
        let m = batch.min(train_set.len());
        let x = train_set.range_f32(0, m);
        let labels = &train_set.labels[..m];
        let mut acts = match (keep, want) {
            (true, _) => Acts::for_training(),
            (false, None) => Acts::inference(),
            (false, Some(_)) => Acts::default(),
        };
        for s in 0..=steps {
            // The first pass is untimed: buffers grow and pages fault.
            if s == 1 {
                acts = acts.timed();
            }
            net.forward(&x, &mut acts);
            if let Some(want) = want {
                let (_, g) = cross_entropy(acts.logits(), k, &Targets::Hard(labels));
                net.backward(&mut acts, &g, &[], want, &mut grads);
            }
        }
        let times = acts.layer_seconds().unwrap_or(&[]);
        let per = |s: f64| (1000.0 * s / steps as f64 * 1000.0).round() / 1000.0;
        let layers: Vec<serde_json::Value> = net
            .arch()
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let [f, b] = times.get(i).copied().unwrap_or([0.0; 2]);
                let mut row = serde_json::json!({"layer": l.short_name(), "forward_ms": per(f)});
                if want.is_some() {
                    row["backward_ms"] = per(b).into();
                }
                row
            })
            .collect();
        out.insert(
            name.into(),
            serde_json::json!({
                "batch_size": m,
                "ms_per_batch": per(times.iter().map(|t| t[0] + t[1]).sum()),
                "layers": layers,
            }),
        );
    }
    Ok(serde_json::json!({
        "bench": "layers",
        "steps": steps,
        "threads": threads,
        "profiles": out,
    }))
}

fn bench_cmd(what: BenchWhat, app: &AppArgs) -> Result<()> {
    let threads = candle_core::utils::get_num_threads();
    let json = match what {
        BenchWhat::Backwork {
            settings, steps, ..
        } => return backwork::bench_backwork(&settings, steps, app, app.model.as_deref()),
        BenchWhat::Train { steps, batch_size } => {
            if steps == 0 {
                bail!("--steps: must be at least 1");
            }
            let train_set = load_data(app, Split::Train)?;
            let cfg = TrainConfig {
                epochs: 1,
                batch_size,
                limit: Some(steps * batch_size),
                ..TrainConfig::default()
            };
            // A tiny test set: the bench times the Adam steps, not the final evaluation.
            let mut probe = load_data(app, Split::Test)?;
            probe = probe.truncated(1);
            let mut rate = 0.0;
            let mut step_times = Vec::new();
            let mut last = Instant::now();
            train(
                &train_set,
                &probe,
                &cfg,
                &std::sync::atomic::AtomicBool::new(false),
                &mut |ev| {
                    if let TrainEvent::Batch { images_per_s, .. } = ev {
                        rate = images_per_s;
                        step_times.push(last.elapsed().as_secs_f64());
                        last = Instant::now();
                    }
                },
            )?;
            // The first steps pay for allocations and page faults while the buffers grow;
            // report the steady state (from the sixth step) beside the mean.
            let steady = &step_times[5.min(step_times.len() - 1)..];
            let steady_ms = 1000.0 * steady.iter().sum::<f64>() / steady.len() as f64;
            serde_json::json!({
                "bench": "train",
                "images_per_s": rate,
                "steady_images_per_s": batch_size as f64 / (steady_ms / 1000.0),
                "step_ms": steady_ms,
                "batch_size": batch_size,
                "steps": steps,
                "threads": threads,
            })
        }
        BenchWhat::Layers { steps } => bench_layers(app, steps, threads)?,
        BenchWhat::Eval => {
            let test = load_data(app, Split::Test)?;
            let (net, _) = load_model(app, &test)?;
            let t = Instant::now();
            let ev = crate::model::eval::evaluate_net(&net, &test, &mut |_, _| {});
            let s = t.elapsed().as_secs_f64();
            serde_json::json!({
                "bench": "eval",
                "images_per_s": ev.total as f64 / s,
                "images": ev.total,
                "seconds": s,
                "batch_size": crate::model::eval::EVAL_BATCH,
                "threads": threads,
            })
        }
    };
    out(format_args!("{json}"))?;
    Ok(())
}
