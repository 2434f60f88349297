//! One image's bookkeeping between steps: its probe window, Adam's step count, its best
//! p(label), and the reinit rules that read them (ALGORITHM.md §4: the original rule, and the
//! stall rule's reinit, perturb and hybrid modes).

use std::collections::VecDeque;

use serde::Serialize;

use super::cost::Nearest;
use super::settings::{Settings, StallMode};

/// Which rule replaced or moved an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReinitKind {
    /// The original rule: T probes of non-increasing p(label) below the cap.
    MonoDec,
    /// The stall rule, `reinit` mode: fresh noise.
    StallReinit,
    /// The stall rule, `perturb` mode: noise added to the image.
    StallPerturb,
}

/// One re-initialised image.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reinit {
    pub kind: ReinitKind,
    pub step: usize,
    /// Row of the image in the run (group-major: label group, then index within it).
    pub image: usize,
    /// Its p(label) when it was re-initialised.
    pub p_label: f32,
}

/// Per-image bookkeeping.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImageState {
    /// p(label) of the last probes since the last (re)initialisation, newest last.
    #[serde(skip)]
    pub(super) window: VecDeque<f32>,
    pub reinits: usize,
    /// Step of the last (re)initialisation (0: the start).
    pub init_step: usize,
    /// Nearest training image at each tap (none at a hidden linear tap whose distance is
    /// taken per neuron).
    pub nearest: Vec<Option<Nearest>>,
    /// Latest probabilities.
    pub probs: Vec<f32>,
    /// Adam steps taken since its last (re)initialisation (for bias correction).
    pub(super) adam_t: u32,
    /// Probes since the last (re)initialisation or perturbation.
    pub(super) probes: usize,
    /// Best p(label) since then, and the probe at which it last rose by more than the
    /// stall tolerance.
    pub(super) best_p: f32,
    pub(super) best_probe: usize,
    /// Under the `perturb` stall rule: perturbations since the kept best last rose by more
    /// than the stall tolerance (or since the last fresh start).
    pub(super) stale_perturbs: usize,
    /// Under the `perturb` stall rule: the best p(label) any probe saw since the last fresh
    /// start (perturbations keep it), and that probe's probabilities and nearest images; the
    /// engine keeps the pixels.
    #[serde(skip)]
    pub(super) kept: Option<Kept>,
}

/// What the `perturb` stall rule keeps of an image's best probe.
#[derive(Clone, Debug)]
pub(super) struct Kept {
    pub p: f32,
    pub probs: Vec<f32>,
    pub nearest: Vec<Option<Nearest>>,
}

impl ImageState {
    /// Whether its best p(label) has not risen by more than the stall tolerance for the stall
    /// window (in probes) while still at or below the threshold: what the app marks as
    /// stalled, whether or not the stall rule is on.
    pub fn is_stalled(&self, s: &Settings, label: usize) -> bool {
        let p = self.probs.get(label).copied().unwrap_or(0.0);
        self.probes.saturating_sub(self.best_probe) >= s.stall_window && p <= s.threshold
    }

    /// Records a probe of p(label) = `p` and applies ALGORITHM.md §4's rule (T probes since
    /// the last (re)initialisation, monotonically non-increasing, the latest below the cap),
    /// then the optional stall rule. The caller re-initialises (or perturbs) the image and
    /// calls [`ImageState::restart`] when it returns a kind.
    pub fn probe(&mut self, p: f32, s: &Settings) -> Option<ReinitKind> {
        self.window.push_back(p);
        while self.window.len() > s.reinit_window {
            self.window.pop_front();
        }
        self.probes += 1;
        if self.best_p == f32::NEG_INFINITY || p > self.best_p + s.stall_tol {
            self.best_p = self.best_p.max(p);
            self.best_probe = self.probes;
        }
        let is_mono_dec = self.window.len() == s.reinit_window
            && self
                .window
                .iter()
                .zip(self.window.iter().skip(1))
                .all(|(a, b)| b - a <= 0.0)
            && p < s.reinit_cap;
        if is_mono_dec {
            return Some(ReinitKind::MonoDec);
        }
        let is_stalled = self.probes - self.best_probe >= s.stall_window && p <= s.threshold;
        match s.stall {
            _ if !is_stalled => None,
            StallMode::Off => None,
            StallMode::Reinit => Some(ReinitKind::StallReinit),
            StallMode::Perturb | StallMode::Hybrid
                if s.stall_restart > 0 && self.stale_perturbs >= s.stall_restart =>
            {
                self.stale_perturbs = 0;
                Some(ReinitKind::StallReinit)
            }
            // Below the cap over the whole run (its kept best included): a fresh start.
            StallMode::Hybrid if !self.has_reached_cap(p, s) => Some(ReinitKind::StallReinit),
            StallMode::Perturb | StallMode::Hybrid => {
                self.stale_perturbs += 1;
                Some(ReinitKind::StallPerturb)
            }
        }
    }

    /// Whether its best p(label) over the run (its kept best, or `p` now) has reached the
    /// reinit cap: past it, a fresh start would throw away an image near the bar, so the
    /// perturbing rules perturb it instead (the `hybrid` rule's choice, and the engine's for
    /// ALGORITHM.md §4's rule).
    pub(super) fn has_reached_cap(&self, p: f32, s: &Settings) -> bool {
        self.kept.as_ref().map_or(p, |k| k.p.max(p)) >= s.reinit_cap
    }

    /// Forgets the image's history: its probe window, Adam's step count, its best p(label).
    pub fn restart(&mut self) {
        self.window.clear();
        self.adam_t = 0;
        self.probes = 0;
        self.best_p = f32::NEG_INFINITY;
        self.best_probe = 0;
    }
}
