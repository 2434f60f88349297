//! The backwork engine (ALGORITHM.md §2–§4): gradient descent on random images against the
//! original cost, the network frozen, one pure `step` at a time.

pub mod cache;
pub mod ceiling;
pub mod cost;
pub mod engine;
pub mod frozen;
pub mod image;
pub mod measure;
pub mod refs;
pub mod saliency;
pub mod search;
pub mod settings;
pub mod trace;

pub use settings::{FcDistance, Init, PixelConstraint, Preset, Settings, SoftmaxTerm, StallMode};
