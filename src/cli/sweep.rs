//! `backwork sweep`: a grid of headless runs, one line of `runs.jsonl` per finished run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::AppArgs;
use super::backwork::{SettingsArgs, build_refs};
use crate::backwork::frozen::FrozenCnn;
use crate::backwork::settings::DEFAULT_STEP_BUDGET;
use crate::data::{Dataset, Split};
use crate::io::write_atomic;
use crate::meta::ModelInfo;
use crate::sweep::{
    RUNS_FILE, RunsFile, SweepRow, done_runs, drop_torn_tail, in_shard, lock_folder, merge,
    parse_shard, point_key, read_rows, rows_text, run_id, run_point,
};

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// Every settings flag of `run` takes a comma-separated list of values (`--layer-weights`
    /// and `--labels`: alternatives separated by ';'); the grid is their product.
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Weights files to sweep, comma-separated; "shipped" is the embedded model [default:
    /// the --model file, or the shipped model].
    #[arg(long, value_name = "A,B,...")]
    pub models: Option<String>,
    /// Run only every N-th grid point from the I-th (1-based), for job arrays.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Join the runs.jsonl of these sweep folders into --out's runs.jsonl instead of running.
    #[arg(long, value_name = "DIR", num_args = 1..)]
    pub merge: Vec<PathBuf>,
    /// The sweep's folder: runs.jsonl is appended to, and a sweep started again skips the
    /// runs already in it.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// One grid point: its index, the model as given, the settings.
struct Point {
    index: usize,
    model: String,
    args: SettingsArgs,
}

/// A sweep folder this call made: removed again when dropped if it is still empty (a sweep
/// stopped before its first row), and by an end at once.
struct MadeDir(Option<(PathBuf, crate::io::abandon::Pending)>);

impl MadeDir {
    fn make(dir: &Path) -> Result<Self> {
        if dir.is_dir() {
            return Ok(Self(None));
        }
        match crate::io::link_loop(dir) {
            Some(l) => bail!(
                "--out {}: {}",
                dir.display(),
                crate::io::link_loop_words(&l)
            ),
            None if std::fs::symlink_metadata(dir).is_ok() => {
                bail!("--out {}: exists and is not a folder", dir.display())
            }
            None => {}
        }
        if let Some(why) = crate::io::folder_problem(&crate::io::parent_dir(dir)) {
            bail!("--out {}: {why}", dir.display());
        }
        std::fs::create_dir(dir).with_context(|| format!("--out {}", dir.display()))?;
        let pending =
            crate::io::abandon::Pending::new(vec![crate::io::abandon::Leftover::EmptyDir(
                dir.to_path_buf(),
            )]);
        Ok(Self(Some((dir.to_path_buf(), pending))))
    }
}

impl Drop for MadeDir {
    fn drop(&mut self) {
        if let Some((dir, _)) = &self.0 {
            // Only an empty folder goes: remove_dir refuses anything else.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The models named, each under one name: `./m` and `a//m` are written `m` and `a/m`, and a
/// file named twice (`m`, `./m`, or its absolute path) keeps its first name, so it runs once
/// and a resumed sweep finds its rows (`./m` and `m` were two models).
fn model_names<'a>(given: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for g in given {
        let name = if g == "shipped" || g.is_empty() {
            g.to_string()
        } else {
            let p: PathBuf = Path::new(g)
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            if p.as_os_str().is_empty() {
                g.to_string()
            } else {
                p.display().to_string()
            }
        };
        let id = std::fs::canonicalize(&name).unwrap_or_else(|_| PathBuf::from(&name));
        if let Some(i) = seen.iter().position(|s| *s == id) {
            names.push(names[i].clone());
        } else {
            names.push(name);
        }
        seen.push(id);
    }
    names
}

/// Whether row `r` was made on the file `model` (as given to `--models`) names: by the file's
/// absolute path the row recorded, or (rows of earlier versions) by the name it was given,
/// as written or as a path leading to the same file (`m`, `./m`, its absolute path, a link).
fn same_model_file(r: &SweepRow, model: &str) -> bool {
    match (&r.model_file, std::fs::canonicalize(model)) {
        (Some(f), Ok(here)) => Path::new(f) == here,
        _ => r.model == model || crate::io::same_place(Path::new(&r.model), Path::new(model)),
    }
}

/// The absolute path of the model file `model` names (none for the shipped model).
fn model_file(model: &str) -> Option<String> {
    (model != "shipped")
        .then(|| std::fs::canonicalize(model).ok())
        .flatten()
        .map(|p| p.display().to_string())
}

/// The grid: models (slowest), then the settings flags in their order, seeds fastest-ish.
fn grid(a: &SweepArgs, app: &AppArgs) -> Vec<Point> {
    let models: Vec<String> = match (&a.models, &app.model) {
        (Some(m), _) => model_names(m.split(',').map(str::trim)),
        (None, Some(m)) => model_names([m.display().to_string().as_str()]),
        (None, None) => vec!["shipped".into()],
    };
    let mut settings = a.settings.clone();
    if settings.max_steps.is_none() {
        settings.max_steps = Some(DEFAULT_STEP_BUDGET.to_string());
    }
    let per_model = settings.grid();
    models
        .iter()
        .flat_map(|m| per_model.iter().map(move |s| (m.clone(), s.clone())))
        .enumerate()
        .map(|(index, (model, args))| Point { index, model, args })
        .collect()
}

pub fn sweep_cmd(a: SweepArgs, app: &AppArgs) -> Result<()> {
    if !a.merge.is_empty() {
        return merge_cmd(&a.merge, &a.out);
    }
    let shard = a
        .shard
        .as_deref()
        .map(parse_shard)
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let points = grid(&a, app);
    // The data and every model are loaded (and checked) before the first run.
    let train = Dataset::load(app.data.as_deref(), Split::Train)?;
    let models = load_models(&points, &train, app)?;
    // Every point's settings are checked before the first run, so a typo fails at once.
    let mut planned = Vec::new();
    let mut noted = std::collections::HashSet::new();
    for p in &points {
        let mut s = p.args.settings(None)?;
        p.args
            .fit_to(&mut s, &models[&p.model].0, &train)
            .with_context(|| format!("--models {}", p.model))?;
        if let crate::backwork::Init::File(path) = &s.init {
            let rows = s.labels.len() * s.batch;
            let (_, note) = crate::export::npy::read_start_images_noted(path, rows, &train.shape)
                .context("--init")?;
            if let Some(n) = note.filter(|n| noted.insert(n.clone())) {
                crate::util::say(format_args!("notice: --init {n}"));
            }
        }
        if shard.is_none_or(|sh| in_shard(p.index, sh)) {
            planned.push((p, s));
        }
    }
    // The folder is made (in an existing folder, as `run` makes its own) if missing, and goes
    // again if the sweep ends without a row in it, or ends at once.
    let _made = MadeDir::make(&a.out)?;
    // Dropped before `_made`: the folder is let go before an empty one is removed.
    let _lock = lock_folder(&a.out).map_err(|e| anyhow::anyhow!("--out {e}"))?;
    let runs = a.out.join(RUNS_FILE);
    drop_torn_tail(&runs)?;
    let rows = read_rows(&runs)?;
    if let Some(w) = twice_in_file(&rows) {
        crate::util::say(format_args!("warning: {}: {w}", crate::util::shown(&runs)));
    }
    let mut runs_file = RunsFile::open(&runs)?;
    // A row of the same grid point made with another file under the model's name is not this
    // sweep's: resuming would mix two networks under one name.
    for (p, s) in &planned {
        let sha = &models[&p.model].1.sha256;
        let settings = serde_json::to_string(s).unwrap_or_default();
        if let Some(r) = rows.iter().find(|r| {
            &r.model_sha256 != sha
                && same_model_file(r, &p.model)
                && serde_json::to_string(&r.settings).unwrap_or_default() == settings
        }) {
            bail!(
                "{}: grid point {} ran on another network named {} (another file, or another --input-mean/--input-std: sha256 {:.12}…, now {:.12}…); sweep into a new --out",
                runs.display(),
                r.point,
                p.model,
                r.model_sha256,
                sha
            );
        }
    }
    // The points done, then each point once (a model or seed listed twice runs once). Both
    // go by the model's contents, not its name.
    let done = done_runs(&rows);
    let mut seen = std::collections::HashSet::new();
    let here = planned.len();
    let mut already = 0;
    let todo: Vec<_> = planned
        .into_iter()
        .filter(|(p, s)| {
            let id = run_id(&models[&p.model].1.sha256, s);
            let first = seen.insert(id.clone());
            let is_done = done.contains(&id);
            already += usize::from(first && is_done);
            first && !is_done
        })
        .collect();
    // The rest of this shard's points repeat one named before.
    let twice = here - todo.len() - already;
    crate::util::say(format_args!(
        "sweep: {} grid points, {} to run here ({} done, {} in other shards, {} named twice)",
        points.len(),
        todo.len(),
        already,
        points.len() - here,
        twice
    ));

    let cancel = super::stop::stop_flag()?;
    let bar = ProgressBar::new(todo.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs, ETA {eta} | {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    // What a stop says: the runs of this call and the rows already there (it said "0 runs
    // finished" with a file full of earlier rows).
    let (before, planned_here) = (rows.len(), todo.len() as u64);
    let stopped_note = |bar: &ProgressBar, runs: &Path| {
        // Read before finishing: finishing a bar moves it to its end.
        let finished = bar.position();
        bar.finish_and_clear();
        let left = planned_here - finished;
        if before as u64 + finished == 0 {
            format!(
                "no run finished, nothing was written; {left} left: run the same command again to go on"
            )
        } else {
            format!(
                "{finished} run(s) finished now, {} row(s) in {} with the earlier ones; {left} left: run the same command again to go on",
                before as u64 + finished,
                crate::util::shown(runs),
            )
        }
    };
    for (p, settings) in todo {
        let (net, info) = &models[&p.model];
        bar.set_message(format!("point {}: reference sets", p.index));
        let refs = match build_refs(net, &train, &info.sha256, &settings.labels, &cancel) {
            Ok(r) => r,
            Err(e) if cancel.load(Ordering::Relaxed) => {
                return Err(e.context(stopped_note(&bar, &runs_file.current_path())));
            }
            Err(e) => return Err(e),
        };
        let started = Instant::now();
        let point = p.index;
        let (outcome, png_gap) = run_point(net, &refs, &settings, &cancel, &mut |ev| {
            if ev.step % 25 == 0 {
                bar.set_message(format!("point {point}: step {}", ev.step));
            }
        })
        .with_context(|| format!("grid point {} ({})", p.index, p.model))?;
        if cancel.load(Ordering::Relaxed) {
            return Err(super::stop::stopped(stopped_note(
                &bar,
                &runs_file.current_path(),
            )));
        }
        let row = SweepRow {
            point: p.index,
            key: point_key(&p.model, &settings),
            model: p.model.clone(),
            model_file: model_file(&p.model),
            model_sha256: info.sha256.clone(),
            input_norm: info.input_norm().ok().flatten().map(|n| n.summary()),
            seed: settings.seed,
            preset: settings.preset_name().into(),
            settings,
            outcome,
            png_gap,
            seconds: started.elapsed().as_secs_f64(),
        };
        runs_file.append(&row)?;
        bar.inc(1);
        let line = row_line(&row);
        // The bar hides itself off a terminal, and its println with it.
        if bar.is_hidden() {
            crate::util::say(format_args!("{line}"));
        } else {
            bar.println(line);
        }
    }
    bar.finish_and_clear();
    crate::util::say(format_args!(
        "sweep: done; rows in {}",
        crate::util::shown(&runs_file.current_path())
    ));
    Ok(())
}

/// Rows of one file that are one run (a hand-edited or concatenated `runs.jsonl`): said,
/// since a table of the file counts the run twice; the sweep itself skips it either way.
fn twice_in_file(rows: &[SweepRow]) -> Option<String> {
    let mut first = HashMap::new();
    let pairs: Vec<(usize, usize)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            first
                .insert(run_id(&r.model_sha256, &r.settings), i)
                .map(|j| (j + 1, i + 1))
        })
        .collect();
    let (a, b) = pairs.first()?;
    Some(format!(
        "rows {a} and {b} are one run (the same model file and settings){}; tables of this file count such runs twice: remove the repeats",
        match pairs.len() {
            1 => String::new(),
            n => format!(", and {} more pair(s)", n - 1),
        }
    ))
}

/// The network and description of every model the grid names, loaded (and checked) once.
fn load_models(
    points: &[Point],
    train: &Dataset,
    app: &super::AppArgs,
) -> Result<HashMap<String, (FrozenCnn, ModelInfo)>> {
    let mut models: HashMap<String, (FrozenCnn, ModelInfo)> = HashMap::new();
    for p in points {
        if !models.contains_key(&p.model) {
            let path = (p.model != "shipped").then(|| PathBuf::from(&p.model));
            let (net, info) = super::load_model_at(app, path.as_deref(), train)
                .with_context(|| format!("--models {}", p.model))?;
            models.insert(p.model.clone(), (FrozenCnn::from_net(net), info));
        }
    }
    Ok(models)
}

/// The line a finished run prints.
fn row_line(row: &SweepRow) -> String {
    format!(
        "point {} {} {} seed {}: {}/{} fooled, median {} steps, min p {:.5}, {} reinits, {:.1} s",
        row.point,
        crate::util::one_line(&row.model),
        row.preset,
        row.seed,
        row.outcome.fooled,
        row.outcome.images,
        row.outcome
            .median_steps
            .map_or("-".into(), |m| format!("{m}")),
        row.outcome.min_p,
        row.outcome.reinits,
        row.seconds
    )
}

fn merge_cmd(dirs: &[PathBuf], out: &Path) -> Result<()> {
    let _made = MadeDir::make(out)?;
    let _lock = lock_folder(out).map_err(|e| anyhow::anyhow!("--out {e}"))?;
    let rows = merge(dirs)?;
    let path = out.join(RUNS_FILE);
    if path.exists()
        && !dirs
            .iter()
            .any(|d| d == out || crate::io::same_place(d, out))
    {
        bail!(
            "{}: exists; merge into a new folder (or name it among the merged ones)",
            path.display()
        );
    }
    write_atomic(&path, rows_text(&rows).as_bytes(), true)?;
    super::out(format_args!(
        "merged {} rows into {}",
        rows.len(),
        crate::util::shown(&path)
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::model_names;

    #[test]
    fn a_model_named_two_ways_is_one_model() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("m.safetensors");
        std::fs::write(&m, b"x").unwrap();
        let d = tmp.path().display().to_string();
        let names = model_names([
            format!("{d}/m.safetensors").as_str(),
            format!("{d}/./m.safetensors").as_str(),
            format!("{d}//m.safetensors").as_str(),
            "shipped",
            "./no/such.safetensors",
        ]);
        let first = format!("{d}/m.safetensors");
        assert_eq!(
            names,
            [&first, &first, &first, "shipped", "no/such.safetensors"]
        );
    }
}
