//! The window's file work as [`Job`]s, so that a frame never waits on a disk: writing the
//! worst-images folder and the retraining report, and reading a run's folder back.

use std::path::PathBuf;
use std::sync::Arc;

use super::job::{Job, JobCtx, Wake};
use crate::data::Dataset;
use crate::export::report::{RetrainReport, write_report};
use crate::export::run::{RunFolder, read_run};
use crate::export::worst::{WorstResults, write_worst};
use crate::meta::{ModelRef, WorstLabel};
use crate::retrain::{Measurement, RetrainConfig};

/// Files written into a folder: how many, and the folder, for the status line.
pub type Written = (usize, PathBuf);

/// Writes the worst-images figure (`sheet.png`, `worst.json`) into `dir`, never over files.
pub fn export_worst_job(
    dir: PathBuf,
    labels: Vec<WorstLabel>,
    (k, model): (usize, ModelRef),
    train: Arc<Dataset>,
    wake: Wake,
) -> Result<Job<(), Written>, String> {
    Job::spawn("export-worst", 0, wake, move |_: &JobCtx<(), Written>| {
        let results = WorstResults {
            classes: &train.classes,
            labels: &labels,
            k,
            model,
            dataset: &train.source,
        };
        let files =
            write_worst(&dir, &results, &train, false).map_err(|e| format!("not exported: {e}"))?;
        Ok((files.len(), dir))
    })
}

/// What a retraining report says, owned (the job writes it on its thread).
pub struct ReportRecord {
    pub config: RetrainConfig,
    pub base_model: ModelRef,
    pub model_file: String,
    pub rounds: Vec<Measurement>,
}

/// Writes `report.json` and `report.png` into `dir`, never over files.
pub fn save_report_job(
    dir: PathBuf,
    r: ReportRecord,
    wake: Wake,
) -> Result<Job<(), Written>, String> {
    Job::spawn("save-report", 0, wake, move |_: &JobCtx<(), Written>| {
        let report = RetrainReport {
            backwork_version: env!("CARGO_PKG_VERSION"),
            config: &r.config,
            base_model: r.base_model,
            model_file: r.model_file,
            date: crate::util::utc_now_iso(),
            rounds: &r.rounds,
        };
        let files =
            write_report(&dir, &report, false).map_err(|e| format!("report not saved: {e}"))?;
        Ok((files.len(), dir))
    })
}

/// Reads a run's folder (`images.npy`, `results.json`) back.
pub fn read_run_job(
    dir: PathBuf,
    shape: crate::net::Shape,
    wake: Wake,
) -> Result<Job<(), (PathBuf, RunFolder)>, String> {
    Job::spawn(
        "read-run",
        0,
        wake,
        move |_: &JobCtx<(), (PathBuf, RunFolder)>| Ok((dir.clone(), read_run(&dir, &shape)?)),
    )
}
