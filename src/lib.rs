//! backwork finds and studies *fooling images*: inputs that a trained CNN classifies with more
//! than 99.9% confidence although they look nothing like the class.
//!
//! The core (`data`, `model`, `export`) never depends on the UI; `app` is the egui window and
//! `cli` the command line, both thin layers over the core.

pub mod app;
pub mod backwork;
pub mod cli;
pub mod data;
pub mod export;
pub mod io;
pub mod meta;
pub mod model;
pub mod net;
pub mod retrain;
pub mod sweep;
pub mod util;
pub mod worker;
