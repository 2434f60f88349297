//! The curves of a run: every cost term (toggle each; linear or log scale), the minimum or
//! mean p(label) of each label, and the engine's steps/s, with reinitialisations and settings
//! changes marked. History is bounded: past `MAX_POINTS` every series is thinned to every
//! other point, so 100,000 steps cost what 4,096 points do, in memory and in drawing.
//!
//! Longer than 500 lines: the curves' bounded history, their simplification for drawing and
//! their unit tests belong together.

use egui_plot::{Corner, GridMark, Legend, Line, MarkerShape, Plot, PlotPoints, Points, VLine};

use crate::backwork::engine::Reinit;
use crate::worker::CurvePoint;

/// Points kept per series before thinning (memory stays bounded over 100,000 steps).
const MAX_POINTS: usize = 4096;
/// Points drawn per series: each bucket of the history is drawn as its lowest and highest
/// point, so spikes stay visible while a frame tessellates a few hundred points, not
/// thousands (software rendering is the bottleneck).
const DRAWN_POINTS: usize = 600;

/// Names of the term series of a network whose taps are named `taps`, in the order of
/// [`term_values`]: total, softmax, then each tap's prev and sim.
pub fn term_names(taps: &[String]) -> Vec<String> {
    let mut names = vec!["total".to_string(), "softmax".to_string()];
    for t in taps {
        names.push(format!("{t}.prev"));
        names.push(format!("{t}.sim"));
    }
    names
}

fn term_values(p: &CurvePoint) -> Vec<f64> {
    let t = &p.terms;
    let mut v = vec![t.total, t.softmax];
    for tap in &t.taps {
        v.push(tap.prev);
        v.push(tap.sim);
    }
    v
}

/// The series shown by default: the total, the softmax term and the deepest tap's two terms
/// (for the §1 network, fc's).
fn default_shown(series: usize) -> Vec<bool> {
    (0..series).map(|i| i < 2 || i + 2 >= series).collect()
}

/// How a plot mapped its values to the screen on the last frame: screen pixels per unit on
/// each axis. The series are simplified for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct View {
    px_per_x: f64,
    px_per_y: f64,
}

impl View {
    fn of(t: &egui_plot::PlotTransform) -> Self {
        Self {
            px_per_x: t.dpos_dvalue_x().abs(),
            px_per_y: t.dpos_dvalue_y().abs(),
        }
    }

    /// Whether drawing for `self` still looks right on `other`: scales within 10% (a live
    /// run's bounds grow by a step per snapshot, which changes nothing visible; a zoom does).
    fn is_close(&self, other: &Self) -> bool {
        let near = |a: f64, b: f64| (a - b).abs() <= 0.1 * a.abs().max(b.abs());
        near(self.px_per_x, other.px_per_x) && near(self.px_per_y, other.px_per_y)
    }
}

/// Whether any plot's scale in `a` is not close to its scale in `b` (or known in only one).
fn views_differ(a: &[Option<View>; 3], b: &[Option<View>; 3]) -> bool {
    a.iter().zip(b).any(|(a, b)| match (a, b) {
        (Some(a), Some(b)) => !a.is_close(b),
        (None, None) => false,
        _ => true,
    })
}

/// Screen pixels a simplified curve may stray from the full one: below what a 1.5 px
/// anti-aliased line shows.
const TOLERANCE_PX: f64 = 0.25;

/// The points of `v` that draw the same curve at `view`'s scale, within [`TOLERANCE_PX`]
/// (Ramer–Douglas–Peucker in screen pixels). A smooth or flat curve needs a few dozen points
/// where it has hundreds, and software rendering pays for every segment's triangles.
pub(super) fn simplify(v: &[[f64; 2]], view: &View) -> Vec<[f64; 2]> {
    if v.len() <= 2 {
        return v.to_vec();
    }
    let px = |p: [f64; 2]| [p[0] * view.px_per_x, p[1] * view.px_per_y];
    let mut keep = vec![false; v.len()];
    keep[0] = true;
    keep[v.len() - 1] = true;
    let mut stack = vec![(0, v.len() - 1)];
    while let Some((a, b)) = stack.pop() {
        let (pa, pb) = (px(v[a]), px(v[b]));
        let (dx, dy) = (pb[0] - pa[0], pb[1] - pa[1]);
        let len = dx.hypot(dy);
        let mut worst = (0.0, a);
        for (i, &p) in v.iter().enumerate().take(b).skip(a + 1) {
            let q = px(p);
            let d = if len > 0.0 {
                (dx * (q[1] - pa[1]) - dy * (q[0] - pa[0])).abs() / len
            } else {
                (q[0] - pa[0]).hypot(q[1] - pa[1])
            };
            if d > worst.0 {
                worst = (d, i);
            }
        }
        if worst.0 > TOLERANCE_PX {
            keep[worst.1] = true;
            stack.push((a, worst.1));
            stack.push((worst.1, b));
        }
    }
    v.iter()
        .zip(keep)
        .filter_map(|(p, k)| k.then_some(*p))
        .collect()
}

/// The curve history of the current run.
pub struct Curves {
    terms: Vec<Vec<[f64; 2]>>,
    /// The names of the term series, in the order of [`term_values`].
    names: Vec<String>,
    min_p: Vec<Vec<[f64; 2]>>,
    mean_p: Vec<Vec<[f64; 2]>>,
    labels: Vec<u8>,
    /// The data's class names, for the legend (label numbers where they name fewer).
    pub class_names: Vec<String>,
    reinits: Vec<[f64; 2]>,
    settings_marks: Vec<f64>,
    /// (step, steps/s) at each snapshot that brought a new rate.
    rate: Vec<[f64; 2]>,
    pub shown: Vec<bool>,
    pub is_log: bool,
    /// Show the mean p(label) per label instead of the minimum.
    pub is_mean: bool,
    /// The decimated series as drawn, rebuilt only when points arrive or the scale changes.
    drawn: Option<Drawn>,
    /// How each plot (terms, p(label), steps/s) showed on the last frame.
    views: [Option<View>; 3],
}

/// What the plots draw, computed once per change rather than once per frame.
struct Drawn {
    is_log: bool,
    is_mean: bool,
    views: [Option<View>; 3],
    terms: Vec<Vec<[f64; 2]>>,
    /// Per term: whether the log scale left out some of its values (zero or negative: the
    /// total is, once the log-odds softmax term goes below zero), said in the legend.
    unplotted: Vec<bool>,
    per_label: Vec<Vec<[f64; 2]>>,
    reinits: Vec<[f64; 2]>,
    rate: Vec<[f64; 2]>,
}

/// Reinitialisation markers drawn at most (evenly spread over the run when there are more).
const DRAWN_MARKERS: usize = 400;

/// At most `max` items of `v`, evenly spread (for markers, where extremes mean nothing).
fn spread<T: Copy>(v: &[T], max: usize) -> Vec<T> {
    if v.len() <= max {
        return v.to_vec();
    }
    (0..max).map(|i| v[i * v.len() / max]).collect()
}

/// At most about `max` points of `v`: per bucket, its lowest and highest point in step order.
fn decimate(v: &[[f64; 2]], max: usize) -> Vec<[f64; 2]> {
    if v.len() <= max {
        return v.to_vec();
    }
    let bucket = v.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in v.chunks(bucket) {
        let lo = chunk.iter().min_by(|a, b| a[1].total_cmp(&b[1]));
        let hi = chunk.iter().max_by(|a, b| a[1].total_cmp(&b[1]));
        if let (Some(&lo), Some(&hi)) = (lo, hi) {
            if lo[0] <= hi[0] {
                out.extend([lo, hi]);
            } else {
                out.extend([hi, lo]);
            }
        }
    }
    out
}

impl Curves {
    /// Empty curves whose legend names the labels by `class_names`.
    pub fn for_classes(class_names: Vec<String>) -> Self {
        Self {
            class_names,
            ..Self::default()
        }
    }
}

impl Default for Curves {
    fn default() -> Self {
        let taps: Vec<String> = crate::backwork::settings::original_tap_names();
        let names = term_names(&taps);
        Self {
            terms: vec![Vec::new(); names.len()],
            shown: default_shown(names.len()),
            names,
            class_names: crate::data::digit_classes(),
            min_p: Vec::new(),
            mean_p: Vec::new(),
            labels: Vec::new(),
            reinits: Vec::new(),
            settings_marks: Vec::new(),
            rate: Vec::new(),
            is_log: true,
            is_mean: false,
            drawn: None,
            views: [None; 3],
        }
    }
}

fn thin(v: &mut Vec<[f64; 2]>) {
    thin_to(v, MAX_POINTS);
}

/// Halves the series (every other point, the newest always kept) until it has at most
/// `max` points.
pub(super) fn thin_to(v: &mut Vec<[f64; 2]>, max: usize) {
    while v.len() > max.max(2) {
        let last = v.len() - 1;
        let mut i = 0;
        v.retain(|_| {
            let keep = i % 2 == 0 || i == last;
            i += 1;
            keep
        });
    }
}

impl Curves {
    /// Starts a new history for a run of `labels`.
    pub fn reset(&mut self, labels: &[u8]) {
        let (shown, is_log, is_mean) = (std::mem::take(&mut self.shown), self.is_log, self.is_mean);
        let names = std::mem::take(&mut self.names);
        let class_names = std::mem::take(&mut self.class_names);
        *self = Self {
            labels: labels.to_vec(),
            class_names,
            min_p: vec![Vec::new(); labels.len()],
            mean_p: vec![Vec::new(); labels.len()],
            terms: vec![Vec::new(); names.len()],
            names,
            shown,
            is_log,
            is_mean,
            ..Self::default()
        };
    }

    pub fn add(&mut self, points: &[CurvePoint], reinits: &[Reinit]) {
        for p in points {
            let x = p.step as f64;
            let values = term_values(p);
            if values.len() != self.terms.len() {
                // The first point of a run on another network: its own series.
                let taps: Vec<String> = (0..p.terms.taps.len())
                    .map(|k| p.terms.tap_name(k))
                    .collect();
                self.names = term_names(&taps);
                self.terms = vec![Vec::new(); values.len()];
            }
            if self.shown.len() != self.terms.len() {
                self.shown = default_shown(self.terms.len());
            }
            for (s, v) in self.terms.iter_mut().zip(values) {
                s.push([x, v]);
            }
            for (s, m) in self.min_p.iter_mut().zip(&p.min_p) {
                s.push([x, *m as f64]);
            }
            for (s, m) in self.mean_p.iter_mut().zip(&p.mean_p) {
                s.push([x, *m as f64]);
            }
        }
        self.mean_p.iter_mut().for_each(thin);
        self.reinits
            .extend(reinits.iter().map(|r| [r.step as f64, r.p_label as f64]));
        self.terms.iter_mut().for_each(thin);
        self.min_p.iter_mut().for_each(thin);
        thin(&mut self.reinits);
        self.drawn = None;
    }

    /// Records the engine's rate at `step` (a new point only when it changed).
    pub fn add_rate(&mut self, step: usize, steps_per_s: f64) {
        if steps_per_s > 0.0 && self.rate.last().is_none_or(|l| l[1] != steps_per_s) {
            self.rate.push([step as f64, steps_per_s]);
            thin(&mut self.rate);
            self.drawn = None;
        }
    }

    /// Reinitialisation markers on the p(label) curves.
    pub fn reinit_markers(&self) -> usize {
        self.reinits.len()
    }

    /// Settings-change markers.
    pub fn settings_markers(&self) -> usize {
        self.settings_marks.len()
    }

    /// Marks a settings change at `step` (once per step: a slider drag changes it every
    /// frame); at most `MAX_POINTS` marks are kept, the newest.
    pub fn mark_settings(&mut self, step: usize) {
        if self.settings_marks.last() == Some(&(step as f64)) {
            return;
        }
        self.settings_marks.push(step as f64);
        if self.settings_marks.len() > MAX_POINTS {
            self.settings_marks.remove(0);
        }
    }

    /// The series as drawn, rebuilt when stale.
    fn drawn(&mut self) -> &Drawn {
        let (is_log, is_mean, views) = (self.is_log, self.is_mean, self.views);
        let is_stale = |d: &Drawn| {
            d.is_log != is_log || d.is_mean != is_mean || views_differ(&d.views, &views)
        };
        if self.drawn.as_ref().is_some_and(is_stale) {
            self.drawn = None;
        }
        let (terms, min_p, mean_p) = (&self.terms, &self.min_p, &self.mean_p);
        let (reinits, rate) = (&self.reinits, &self.rate);
        // Bounded first (each bucket's extremes), then simplified for the plot's last scale.
        let draw = |v: &[[f64; 2]], view: &Option<View>| {
            let d = decimate(v, DRAWN_POINTS);
            match view {
                Some(view) => simplify(&d, view),
                None => d,
            }
        };
        self.drawn.get_or_insert_with(|| {
            let unplotted = terms
                .iter()
                .map(|series| is_log && series.iter().any(|[_, y]| *y <= 0.0))
                .collect();
            let terms = terms
                .iter()
                .map(|series| {
                    let pts: Vec<[f64; 2]> = series
                        .iter()
                        .filter(|[_, y]| !is_log || *y > 0.0)
                        .map(|&[x, y]| [x, if is_log { y.log10() } else { y }])
                        .collect();
                    draw(&pts, &views[0])
                })
                .collect();
            let per_label = if is_mean { mean_p } else { min_p };
            Drawn {
                is_log,
                is_mean,
                views,
                terms,
                unplotted,
                per_label: per_label.iter().map(|v| draw(v, &views[1])).collect(),
                reinits: spread(reinits, DRAWN_MARKERS),
                rate: draw(rate, &views[2]),
            }
        })
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            for (name, on) in self.names.iter().zip(self.shown.iter_mut()) {
                ui.checkbox(on, name.as_str());
            }
            ui.separator();
            ui.checkbox(&mut self.is_log, "log scale");
            ui.separator();
            ui.selectable_value(&mut self.is_mean, false, "min p")
                .on_hover_text("Lowest p(label) of each label's images");
            ui.selectable_value(&mut self.is_mean, true, "mean p")
                .on_hover_text("Mean p(label) of each label's images");
        });
        let rate_h = 70.0;
        let h = ((ui.available_height() - rate_h) / 2.0 - 16.0).max(100.0);
        let is_log = self.is_log;
        let is_mean = self.is_mean;
        let shown = self.shown.clone();
        let names = self.names.clone();
        let labels = self.labels.clone();
        let class_names = self.class_names.clone();
        let marks = spread(&self.settings_marks, DRAWN_MARKERS);
        let d = self.drawn();
        // The terms fall over a run: their legend goes where the curves are not, low left.
        let terms = Plot::new("terms")
            .height(h)
            .legend(small_legend(Corner::LeftBottom))
            .x_axis_label("step")
            .y_axis_label("term");
        let terms = if is_log {
            terms.y_axis_formatter(power_of_ten)
        } else {
            terms
        };
        let mut views = [None; 3];
        let mut is_touched = false;
        let mut note = |r: &egui_plot::PlotResponse<()>| {
            is_touched |= r.response.hovered() || r.response.dragged();
            Some(View::of(&r.transform))
        };
        views[0] = note(&terms.show(ui, |p| {
            for (((name, series), on), cut) in
                names.iter().zip(&d.terms).zip(&shown).zip(&d.unplotted)
            {
                if *on {
                    p.line(Line::new(
                        legend_name(name, *cut),
                        PlotPoints::from(series.clone()),
                    ));
                }
            }
            for &m in &marks {
                p.vline(VLine::new("settings changed", m));
            }
        }));
        // p(label) climbs from 0 to 1: its legend goes low right, where the climbed curves
        // are not.
        let p_label = Plot::new("p_label")
            .height(h)
            .legend(small_legend(Corner::RightBottom))
            .x_axis_label("step")
            .y_axis_label(if is_mean {
                "mean p(label)"
            } else {
                "min p(label)"
            })
            .show(ui, |p| {
                for (label, series) in labels.iter().zip(&d.per_label) {
                    let name = class_names
                        .get(*label as usize)
                        .cloned()
                        .unwrap_or_else(|| label.to_string());
                    p.line(Line::new(name, PlotPoints::from(series.clone())));
                }
                p.points(
                    Points::new("reinitialised", PlotPoints::from(d.reinits.clone()))
                        .shape(MarkerShape::Cross)
                        .radius(3.0),
                );
                for &m in &marks {
                    p.vline(VLine::new("settings changed", m));
                }
            });
        views[1] = note(&p_label);
        let rate = Plot::new("rate")
            .height(rate_h)
            .x_axis_label("step")
            .y_axis_label("steps/s")
            .show(ui, |p| {
                p.line(Line::new("steps/s", PlotPoints::from(d.rate.clone())));
            });
        views[2] = note(&rate);
        if is_touched && views_differ(&views, &self.views) {
            // Zoomed by the user: the next frame draws for the new scale. (A scale that
            // changes by itself, as a live run's bounds grow, waits for the next snapshot.)
            ui.ctx().request_repaint();
        }
        self.views = views;
    }
}

/// A compact, translucent legend in `corner`.
fn small_legend(corner: Corner) -> Legend {
    Legend::default()
        .position(corner)
        .text_style(egui::TextStyle::Small)
        .background_alpha(0.6)
}

/// A term's legend entry: its name, and a word when the log scale cannot draw all of it.
fn legend_name(name: &str, unplotted: bool) -> String {
    if unplotted {
        format!("{name} (≤ 0 not drawn on log scale)")
    } else {
        name.to_string()
    }
}

/// A log-scale axis mark (the value is log10 of the term) as the term itself: 1e-2, 0.1, 1,
/// 10, 1e2.
fn power_of_ten(mark: GridMark, _range: &std::ops::RangeInclusive<f64>) -> String {
    let e = mark.value;
    if (e - e.round()).abs() > 1e-6 {
        return format!("{:.2e}", 10f64.powf(e));
    }
    match e.round() as i32 {
        -1 => "0.1".into(),
        0 => "1".into(),
        1 => "10".into(),
        k => format!("1e{k}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_keeps_each_buckets_extremes_and_bounds_the_count() {
        let v: Vec<[f64; 2]> = (0..10_000)
            .map(|i| [i as f64, if i == 4321 { 99.0 } else { (i % 7) as f64 }])
            .collect();
        let d = decimate(&v, 600);
        assert!(d.len() <= 602, "{}", d.len());
        assert!(d.iter().any(|p| p[1] == 99.0), "the spike survives");
        assert!(d.windows(2).all(|w| w[0][0] <= w[1][0]), "in step order");
        assert_eq!(decimate(&v[..100], 600), v[..100].to_vec());
    }

    #[test]
    fn simplification_keeps_the_curve_within_a_quarter_pixel() {
        // 1,000 steps on a 350 px wide plot whose y axis spans 0..1 over 145 px (the
        // p(label) plot's size in a 1280 x 860 window).
        let view = View {
            px_per_x: 350.0 / 1000.0,
            px_per_y: 145.0,
        };
        let sigmoid: Vec<[f64; 2]> = (0..1000)
            .map(|i| [i as f64, 1.0 / (1.0 + (-(i as f64 - 400.0) / 20.0).exp())])
            .collect();
        let s = simplify(&sigmoid, &view);
        assert!(
            s.len() < 60,
            "a sigmoid needs a few dozen points, kept {}",
            s.len()
        );
        assert_eq!(s.first(), sigmoid.first());
        assert_eq!(s.last(), sigmoid.last());
        // Every dropped point lies within the tolerance (in screen pixels) of the drawn
        // segment over it.
        let px = |p: [f64; 2]| [p[0] * view.px_per_x, p[1] * view.px_per_y];
        for &p in &sigmoid {
            let k = s.partition_point(|q| q[0] <= p[0]).clamp(1, s.len() - 1);
            let (a, b, p) = (px(s[k - 1]), px(s[k]), px(p));
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let d = (dx * (p[1] - a[1]) - dy * (p[0] - a[0])).abs() / dx.hypot(dy);
            assert!(d <= TOLERANCE_PX, "{p:?} is {d} px off");
        }
        // A one-step spike of a pixel survives; a flat line keeps its two ends.
        let mut flat = vec![[0.0, 0.5]; 0];
        flat.extend((0..1000).map(|i| [i as f64, 0.5]));
        assert_eq!(simplify(&flat, &view).len(), 2);
        flat[500][1] += 1.0 / 145.0;
        assert!(simplify(&flat, &view).contains(&[500.0, 0.5 + 1.0 / 145.0]));
    }

    #[test]
    fn the_log_scale_says_when_it_leaves_a_term_out() {
        // The total goes negative at step 1 (the log-odds softmax term): on a log axis its
        // legend says so, instead of the curve just stopping.
        let mut c = Curves::default();
        c.reset(&[0]);
        let points: Vec<CurvePoint> = [3.0, -0.5]
            .iter()
            .enumerate()
            .map(|(step, &total)| CurvePoint {
                step,
                terms: crate::backwork::cost::CostTerms {
                    total,
                    softmax: 1.0,
                    ..Default::default()
                },
                min_p: vec![0.5],
                mean_p: vec![0.5],
            })
            .collect();
        c.add(&points, &[]);
        c.is_log = false;
        assert_eq!(c.drawn().unplotted, [false, false]);
        c.is_log = true;
        assert_eq!(c.drawn().unplotted, [true, false]);
        assert_eq!(c.drawn().terms[0].len(), 1);
        assert!(legend_name("total", true).contains("not drawn"));
        assert_eq!(legend_name("total", false), "total");
    }

    #[test]
    fn a_hundred_thousand_steps_keep_memory_bounded() {
        let mut c = Curves::default();
        c.reset(&[0, 1]);
        let batch: Vec<CurvePoint> = (0..100_000)
            .map(|step| CurvePoint {
                step,
                terms: Default::default(),
                min_p: vec![0.5, 0.6],
                mean_p: vec![0.7, 0.8],
            })
            .collect();
        for chunk in batch.chunks(997) {
            c.add(chunk, &[]);
            c.add_rate(chunk[0].step, chunk[0].step as f64);
        }
        assert!(c.terms.iter().all(|s| s.len() <= MAX_POINTS));
        assert!(
            c.min_p
                .iter()
                .chain(&c.mean_p)
                .all(|s| s.len() <= MAX_POINTS)
        );
        assert!(c.rate.len() <= MAX_POINTS);
        // The history still spans the whole run.
        assert_eq!(c.terms[0].first().map(|p| p[0]), Some(0.0));
        assert!(c.terms[0].last().is_some_and(|p| p[0] >= 99_000.0));
        assert!(c.drawn().terms.iter().all(|s| s.len() <= DRAWN_POINTS + 2));
    }
}
