//! A network with its weights: the forward pass that keeps what the backward needs, and the
//! backward pass that takes gradients arriving at the logits and at any tap and returns the
//! gradient with respect to the input, the weights, or both.

use super::arch::{Arch, ArchError, Layer, Shape, Tap};
use super::kernels::{
    ConvGeom, PoolGeom, col2im_add, column_sums, fill_rows, im2col, max_pool, max_unpool, relu,
    relu_back, relu_in_place, softmax_rows,
};
use super::linalg::{Mat, matmul};
use super::{direct, winograd};
use std::time::Instant;

/// A network: its description and its parameters in the core's layout.
///
/// # Layout
/// A convolution's weight is `[out, ky, kx, in]` (a row per output channel, in patch order); a
/// linear layer's is `[out, in]` with the inputs in NHWC order when they come from a flattened
/// image. Parameters are listed in [`Arch::params`] order (each layer's weight, then its bias).
#[derive(Clone, Debug)]
pub struct Net {
    arch: Arch,
    shapes: Vec<Shape>,
    taps: Vec<Tap>,
    params: Vec<Vec<f32>>,
    /// For each layer, the index of its weight in `params` (its bias follows).
    slot: Vec<Option<usize>>,
    /// For each layer, whether it is a ReLU applied in place on its input's buffer (the
    /// input is no tap, and nothing else reads it: a convolution's backward needs only its
    /// input and the gradient at its output).
    in_place: Vec<bool>,
    /// Which weights these are: a number no other weights had, drawn anew whenever they may
    /// change ([`Net::params_mut`]), so a pass can keep kernels transformed from them.
    version: u64,
    /// The normalisation the first layer's inputs go through, if the network was trained on
    /// normalised images ([`Net::set_input_norm`]).
    norm: Option<InputNorm>,
}

/// An input normalisation as torchvision's `Normalize(mean, std)`: channel c of an image goes
/// into the first layer as `(x − mean[c]) / std[c]`. The taps (the cost's `inputs` term
/// among them) and the pixel box stay in the image's own values.
#[derive(Clone, Debug, PartialEq)]
pub struct InputNorm {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl InputNorm {
    /// Checked for a network of `channels` input channels: one value per channel, or one for
    /// all (widened); every mean finite, every deviation finite and positive.
    pub fn new(mean: &[f32], std: &[f32], channels: usize) -> Result<Self, String> {
        let widen = |v: &[f32], what: &str| -> Result<Vec<f32>, String> {
            match v.len() {
                1 => Ok(vec![v[0]; channels]),
                n if n == channels => Ok(v.to_vec()),
                n => Err(format!(
                    "{n} {what} values for a network of {channels} input channel(s): give one, \
                     or one per channel"
                )),
            }
        };
        let (mean, std) = (widen(mean, "mean")?, widen(std, "std")?);
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("a mean of {m} is not a number backwork can use"));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("a std of {s} is not a positive number"));
        }
        Ok(Self { mean, std })
    }

    /// `x` (images in NHWC order: channels innermost) normalised into `out`.
    fn apply(&self, x: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(x.iter().enumerate().map(|(i, &v)| {
            let c = i % self.mean.len();
            (v - self.mean[c]) / self.std[c]
        }));
    }

    /// A gradient at the normalised inputs taken back to the image's values.
    fn back(&self, g: &mut [f32]) {
        for (i, v) in g.iter_mut().enumerate() {
            *v /= self.std[i % self.std.len()];
        }
    }
}

/// `v` resized to `n` values (new ones zero).
fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    v
}

/// Layer `layer`'s transformed kernels for `pass` (0 forward, 1 backward) from
/// [`Acts`]'s cache, made by `make` unless they are already those of weights `version`.
fn kernels(
    cache: &mut Vec<[(Option<u64>, Vec<f32>); 2]>,
    (layer, pass): (usize, usize),
    version: u64,
    make: impl FnOnce(&mut Vec<f32>),
) -> &[f32] {
    if cache.len() <= layer {
        cache.resize_with(layer + 1, Default::default);
    }
    let (of, k) = &mut cache[layer][pass];
    if *of != Some(version) {
        make(k);
        *of = Some(version);
    }
    k
}

/// The next [`Net`] weights version.
static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Images a convolution patches at once: larger batches are cut into chunks, so the patch
/// matrix stays bounded (about 320 MB for the original's conv1) whatever the batch.
pub const CHUNK: usize = 512;

/// Images a convolution patches at once when the patches are not kept: few enough that the
/// patch matrix (10 MB for 16 images of the original's conv1) stays in the last-level cache
/// between being written and being read by the product.
const STREAM: usize = 16;

/// Gradients (or Adam moments) with the shapes of a network's parameters.
pub type Grads = Vec<Vec<f32>>;

/// The forward pass of a batch of M images, kept for the backward: every layer's output, the
/// convolutions' patch matrices when kept, plus scratch for the backward.
#[derive(Default, Clone, Debug)]
pub struct Acts {
    pub m: usize,
    pub input: Vec<f32>,
    /// The input normalised, when the network normalises it ([`Net::set_input_norm`]).
    normed: Vec<f32>,
    /// Each layer's output, M rows of its shape (stale for a layer whose output a ReLU took
    /// over in place: read outputs through [`Acts::layer`]).
    outs: Vec<Vec<f32>>,
    /// Whether `outs[i]` holds layer i's output.
    kept: Vec<bool>,
    /// Softmax of the logits, M×K.
    pub probs: Vec<f32>,
    cols: Vec<Vec<f32>>,
    /// Keep every convolution's patch matrix for a weight backward (set by
    /// [`Acts::for_training`]); otherwise patches are made a few images at a time, in cache.
    keep_cols: bool,
    /// Whether `cols` hold the whole batch's patches (kept, and at most [`CHUNK`] images).
    cols_whole: bool,
    scratch: [Vec<f32>; 3],
    /// Each layer's transformed kernels for the Winograd or the direct path, forward and
    /// backward, and the weights ([`Net`]'s `version`) they were made from: a network whose
    /// weights did not change since the last pass does not transform them again.
    kernels: Vec<[(Option<u64>, Vec<f32>); 2]>,
    /// The Winograd weight gradient's per-part accumulators, kept between steps.
    grad_parts: Vec<Vec<f32>>,
    /// Seconds spent in each layer, forward and backward, summed over the passes (kept only
    /// when [`Acts::timed`] asked for it).
    timing: Option<Vec<[f64; 2]>>,
    /// Passes with no backward (set by [`Acts::inference`]): a Winograd convolution followed
    /// by a ReLU and a 2×2 max-pool stores only the pool's outputs.
    forward_only: bool,
    /// Whether the last forward fused a pool into a convolution (a backward then runs the
    /// forward again in full first).
    fused: bool,
}

impl Acts {
    /// A record for passes that compute weight gradients: the forward keeps the patch
    /// matrices (up to [`CHUNK`] images) for the backward instead of making them again.
    pub fn for_training() -> Self {
        Self {
            keep_cols: true,
            ..Self::default()
        }
    }

    /// Marks convolution `conv`'s output and its ReLU's as not held, their pool having been
    /// fused into it; returns the pool's layer, the last one done.
    fn fuse(&mut self, conv: usize) -> usize {
        self.kept[conv] = false;
        self.kept[conv + 1] = false;
        self.fused = true;
        conv + 2
    }

    /// A record for forward passes only (inference, reference sets): convolutions store what
    /// the pool after them keeps (see [`Acts`]'s `forward_only`). A backward still works: it
    /// runs the forward again in full first.
    pub fn inference() -> Self {
        Self {
            forward_only: true,
            ..Self::default()
        }
    }

    /// The same record, also summing the seconds each layer takes (see
    /// [`Acts::layer_seconds`]): the profile `backwork bench layers` prints.
    pub fn timed(self) -> Self {
        Self {
            timing: Some(Vec::new()),
            ..self
        }
    }

    /// For each layer, the seconds its forward and its backward took, summed over the passes
    /// since [`Acts::timed`]; `None` for an untimed record.
    pub fn layer_seconds(&self) -> Option<&[[f64; 2]]> {
        self.timing.as_deref()
    }

    /// Adds the time since `*mark` to layer `layer`'s entry `pass` (0 forward, 1 backward)
    /// when timed, and moves the mark to now.
    fn clock(&mut self, mark: &mut Option<Instant>, layer: usize, pass: usize) {
        if let (Some(t), Some(m)) = (&mut self.timing, mark.as_mut()) {
            let now = Instant::now();
            if t.len() <= layer {
                t.resize(layer + 1, [0.0; 2]);
            }
            t[layer][pass] += (now - *m).as_secs_f64();
            *m = now;
        }
    }

    /// The logits, M×K.
    pub fn logits(&self) -> &[f32] {
        self.outs.last().map_or(&[][..], |v| v.as_slice())
    }

    /// Layer i's output (M rows of its shape), unless a ReLU after it took it over in place.
    pub fn layer(&self, i: usize) -> Option<&[f32]> {
        self.kept
            .get(i)
            .copied()
            .unwrap_or(false)
            .then(|| self.outs[i].as_slice())
    }
}

/// What a backward pass computes besides the gradients it propagates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Want {
    /// The gradient with respect to the input images.
    pub input: bool,
    /// The gradients with respect to the parameters (added to the `Grads` given).
    pub weights: bool,
}

impl Net {
    /// A network of `arch` with parameters in the core's layout (see [`Net`]).
    pub fn new(arch: Arch, params: Vec<Vec<f32>>) -> Result<Self, NetError> {
        let shapes = arch.shapes()?;
        let taps = arch.taps()?;
        let specs = arch.params()?;
        if specs.len() != params.len() {
            return Err(NetError::Count(specs.len(), params.len()));
        }
        for (spec, p) in specs.iter().zip(&params) {
            let want: usize = spec.torch_shape.iter().product();
            if want != p.len() {
                return Err(NetError::Size(spec.name.clone(), want, p.len()));
            }
        }
        let mut slot = vec![None; arch.layers.len()];
        for (i, spec) in specs.iter().enumerate().step_by(2) {
            slot[spec.layer] = Some(i);
        }
        let in_place = (0..arch.layers.len())
            .map(|i| {
                i > 0
                    && arch.layers[i] == Layer::Relu
                    && matches!(arch.layers[i - 1], Layer::Conv { .. })
                    && !taps.iter().any(|t| t.after == Some(i - 1))
            })
            .collect();
        Ok(Self {
            arch,
            shapes,
            taps,
            params,
            slot,
            in_place,
            version: next_version(),
            norm: None,
        })
    }

    /// A network of `arch` from parameters in PyTorch's layout (convolution weights `[out, in,
    /// ky, kx]`, flattened features in (c, h, w) order), in [`Arch::params`] order.
    pub fn from_torch(arch: Arch, torch: Vec<Vec<f32>>) -> Result<Self, NetError> {
        let mut net = Self::new(arch, torch)?;
        for layer in 0..net.arch.layers.len() {
            if let Some(w) = net.slot[layer] {
                let p = std::mem::take(&mut net.params[w]);
                net.params[w] = net.permute(layer, &p, true);
            }
        }
        Ok(net)
    }

    /// Sets the normalisation the first layer's inputs go through (`None`: the images as
    /// they are, as ALGORITHM.md §1's network takes them).
    pub fn set_input_norm(&mut self, norm: Option<InputNorm>) -> Result<(), String> {
        if let Some(n) = &norm
            && (n.mean.len() != self.arch.input.c || n.std.len() != self.arch.input.c)
        {
            return Err(format!(
                "the normalisation has {} channel(s), the network's input {}",
                n.mean.len(),
                self.arch.input.c
            ));
        }
        self.norm = norm;
        Ok(())
    }

    /// The normalisation the first layer's inputs go through, if any.
    pub fn input_norm(&self) -> Option<&InputNorm> {
        self.norm.as_ref()
    }

    /// The parameters in PyTorch's layout, in [`Arch::params`] order.
    pub fn to_torch(&self) -> Vec<Vec<f32>> {
        self.torch_layout(&self.params)
    }

    /// Values shaped like the parameters (gradients, say) moved to PyTorch's layout.
    pub fn torch_layout(&self, values: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let mut out = values.to_vec();
        for layer in 0..self.arch.layers.len() {
            if let Some(w) = self.slot[layer] {
                out[w] = self.permute(layer, &values[w], false);
            }
        }
        out
    }

    /// A weight moved between PyTorch's layout and the core's (`to_core`) or back.
    fn permute(&self, layer: usize, w: &[f32], to_core: bool) -> Vec<f32> {
        let input = self.arch.input_of(&self.shapes, layer);
        // (rows, a, b): each row is an a×b block stored a-major in PyTorch, b-major here.
        let (a, b) = match self.arch.layers[layer] {
            Layer::Conv { kernel, .. } => (input.c, kernel * kernel),
            Layer::Linear { .. } => {
                let s = self.spatial_source(layer);
                (s.c, s.h * s.w)
            }
            _ => return w.to_vec(),
        };
        let mut out = vec![0.0; w.len()];
        for (src, dst) in w.chunks_exact(a * b).zip(out.chunks_exact_mut(a * b)) {
            for i in 0..a {
                for j in 0..b {
                    if to_core {
                        dst[j * a + i] = src[i * b + j];
                    } else {
                        dst[i * b + j] = src[j * a + i];
                    }
                }
            }
        }
        out
    }

    /// The shape whose flattening a linear layer reads (the input itself when flat).
    fn spatial_source(&self, layer: usize) -> Shape {
        let mut i = layer;
        while i > 0 && matches!(self.arch.layers[i - 1], Layer::Flatten | Layer::Relu) {
            i -= 1;
        }
        self.arch.input_of(&self.shapes, i)
    }

    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    pub fn taps(&self) -> &[Tap] {
        &self.taps
    }

    pub fn params(&self) -> &[Vec<f32>] {
        &self.params
    }

    pub fn params_mut(&mut self) -> &mut [Vec<f32>] {
        self.version = next_version();
        &mut self.params
    }

    /// Values of one input image.
    pub fn input_len(&self) -> usize {
        self.arch.input.len()
    }

    pub fn classes(&self) -> usize {
        self.arch.classes()
    }

    /// Zero gradients shaped like the parameters.
    pub fn zero_grads(&self) -> Grads {
        self.params.iter().map(|p| vec![0.0; p.len()]).collect()
    }

    /// A tap's values in a forward record, M rows of the tap's size.
    pub fn tap<'a>(&self, a: &'a Acts, tap: usize) -> &'a [f32] {
        match self.taps[tap].after {
            None => &a.input,
            Some(l) => &a.outs[l],
        }
    }

    /// The max-pool that convolution `layer`'s outputs go through after an in-place ReLU with
    /// no tap on it: a forward-only pass can store the pool's outputs alone.
    fn fused_pool(&self, layer: usize) -> Option<PoolGeom> {
        let Some(&Layer::MaxPool { window, stride }) = self.arch.layers.get(layer + 2) else {
            return None;
        };
        (self.in_place.get(layer + 1) == Some(&true)
            && self.taps.iter().all(|t| t.after != Some(layer + 1)))
        .then(|| self.pool_geom(layer + 2, window, stride))
    }

    /// The geometry of convolution `layer` with the given kernel, stride and padding.
    fn conv_geom(&self, layer: usize, kernel: usize, stride: usize, pad: usize) -> ConvGeom {
        let out = self.shapes[layer];
        ConvGeom {
            input: self.arch.input_of(&self.shapes, layer),
            kernel,
            stride,
            pad,
            out_h: out.h,
            out_w: out.w,
        }
    }

    /// The geometry of max-pool `layer` with the given window and stride.
    fn pool_geom(&self, layer: usize, window: usize, stride: Option<usize>) -> PoolGeom {
        PoolGeom {
            input: self.arch.input_of(&self.shapes, layer),
            window,
            stride: stride.unwrap_or(window),
            out: self.shapes[layer],
        }
    }

    /// Class probabilities of the images `x` (M rows), M×K, a batch of at most `batch`
    /// images at a time.
    pub fn probs(&self, x: &[f32], batch: usize) -> Vec<f32> {
        let mut a = Acts::inference();
        let mut out = Vec::with_capacity(x.len() / self.input_len().max(1) * self.classes());
        for xs in x.chunks(batch.max(1) * self.input_len()) {
            self.forward(xs, &mut a);
            out.extend_from_slice(&a.probs);
        }
        out
    }

    /// Runs the network on `x` (M rows of [`Self::input_len`] values), filling `a`.
    pub fn forward(&self, x: &[f32], a: &mut Acts) {
        let m = x.len() / self.input_len();
        let n = self.arch.layers.len();
        a.m = m;
        a.input.clear();
        a.input.extend_from_slice(&x[..m * self.input_len()]);
        if let Some(norm) = &self.norm {
            norm.apply(&a.input, &mut a.normed);
        }
        a.outs.resize_with(n, Vec::new);
        a.cols.resize_with(n, Vec::new);
        a.kept.clear();
        a.kept.resize(n, true);
        a.cols_whole = a.keep_cols && m <= CHUNK;
        let chunk = if a.cols_whole { CHUNK } else { STREAM };
        let mut mark = a.timing.is_some().then(Instant::now);
        // Whether the layer before applied this in-place ReLU itself (a convolution does,
        // as it stores its outputs).
        let mut relu_done = false;
        // Layers up to this one were done by a convolution with its ReLU and pool fused.
        let mut done_to = None;
        a.fused = false;
        for i in 0..n {
            if i > 0 {
                a.clock(&mut mark, i - 1, 0);
            }
            if done_to.is_some_and(|d| i <= d) {
                continue;
            }
            if self.in_place[i] {
                // Swapped rather than moved, so both buffers keep their capacity.
                a.outs.swap(i - 1, i);
                a.kept[i - 1] = false;
                if !std::mem::take(&mut relu_done) {
                    relu_in_place(&mut a.outs[i]);
                }
                continue;
            }
            let (before, rest) = a.outs.split_at_mut(i);
            let x = match i {
                0 if self.norm.is_some() => &a.normed,
                0 => &a.input,
                _ => &before[i - 1],
            };
            let out = &mut rest[0];
            match self.arch.layers[i] {
                Layer::Conv {
                    out: c,
                    kernel,
                    stride,
                    pad,
                } => {
                    let g = self.conv_geom(i, kernel, stride, pad);
                    let w = self.slot[i].unwrap_or(0);
                    let (pin, pout) = (g.input.len(), self.shapes[i].len());
                    // An in-place ReLU next: folded into the store (its output replaces
                    // this layer's, which nothing else reads).
                    let relu = self.in_place.get(i + 1).copied().unwrap_or(false);
                    // A pool after the ReLU, for a pass with no backward: the convolution
                    // writes the pool's output, and the ReLU's and the pool's turns are done.
                    let pool = if a.forward_only {
                        self.fused_pool(i)
                    } else {
                        None
                    };
                    if direct::worth_it(&g, c) {
                        let wt = kernels(&mut a.kernels, (i, 0), self.version, |k| {
                            direct::transform_weights(&self.params[w], g.patch(), c, k)
                        });
                        let post = (&self.params[w + 1][..], relu);
                        if let Some(pg) = &pool {
                            let pooled = sized(&mut rest[2], m * pg.out.len());
                            direct::conv(x, m, &g, wt, c, post, Some(pg), pooled);
                            done_to = Some(a.fuse(i));
                            continue;
                        }
                        relu_done = relu;
                        direct::conv(x, m, &g, wt, c, post, None, sized(out, m * pout));
                        if a.cols_whole {
                            // The weight backward reads the patches: made here as on the
                            // product's path.
                            im2col(x, m, &g, &mut a.cols[i]);
                        }
                        continue;
                    }
                    if winograd::worth_it(&g) {
                        // No patches: the weight backward takes the Winograd path too.
                        let u = kernels(&mut a.kernels, (i, 0), self.version, |k| {
                            winograd::transform_weights(&self.params[w], g.input.c, c, k)
                        });
                        // The output tile is the pool's window when both are 2×2.
                        let pool = pool.filter(|p| p.window == 2 && p.stride == 2);
                        let post = winograd::Post {
                            bias: &self.params[w + 1],
                            relu,
                            pool: pool.is_some(),
                        };
                        if let Some(pg) = &pool {
                            let pooled = sized(&mut rest[2], m * pg.out.len());
                            winograd::conv(x, m, &g, u, c, post, pooled);
                            done_to = Some(a.fuse(i));
                            continue;
                        }
                        relu_done = relu;
                        winograd::conv(x, m, &g, u, c, post, sized(out, m * pout));
                        continue;
                    }
                    out.resize(m * pout, 0.0);
                    fill_rows(out, &self.params[w + 1]);
                    // Patches a chunk of images at a time: the patch matrix is the largest
                    // buffer (627 KB an image for the original's conv1).
                    for lo in (0..m).step_by(chunk) {
                        let hi = (lo + chunk).min(m);
                        im2col(&x[lo * pin..hi * pin], hi - lo, &g, &mut a.cols[i]);
                        matmul(
                            Mat::rows(&a.cols[i], (hi - lo) * g.positions(), g.patch()),
                            Mat::rows(&self.params[w], c, g.patch()).t(),
                            &mut out[lo * pout..hi * pout],
                            true,
                        );
                    }
                }
                Layer::Linear { out: k } => {
                    let w = self.slot[i].unwrap_or(0);
                    let d = self.arch.input_of(&self.shapes, i).len();
                    out.resize(m * k, 0.0);
                    fill_rows(out, &self.params[w + 1]);
                    matmul(
                        Mat::rows(x, m, d),
                        Mat::rows(&self.params[w], k, d).t(),
                        out,
                        true,
                    );
                }
                Layer::Relu => relu(x, out),
                Layer::MaxPool { window, stride } => {
                    max_pool(x, m, &self.pool_geom(i, window, stride), out)
                }
                Layer::Flatten => {
                    out.clear();
                    out.extend_from_slice(x);
                }
            }
        }
        softmax_rows(&a.outs[n - 1], self.classes(), &mut a.probs);
        a.clock(&mut mark, n.saturating_sub(1), 0);
    }

    /// The backward pass of the forward `a`: `g_logits` (M×K, empty for zero) and `tap_grads`
    /// (one per tap, empty for zero) are the gradients of a scalar cost at the logits and the
    /// taps. Writes the weight gradients into `grads` (shaped as [`Net::zero_grads`]) when
    /// `want.weights`, and returns the
    /// gradient with respect to the input (M rows) when `want.input` (else an empty vector).
    pub fn backward(
        &self,
        a: &mut Acts,
        g_logits: &[f32],
        tap_grads: &[&[f32]],
        want: Want,
        grads: &mut Grads,
    ) -> Vec<f32> {
        if a.fused {
            // The forward stored no outputs before its fused pools: made again in full.
            let x = std::mem::take(&mut a.input);
            let forward_only = std::mem::replace(&mut a.forward_only, false);
            self.forward(&x, a);
            a.forward_only = forward_only;
        }
        let m = a.m;
        let n = self.arch.layers.len();
        let [mut g, mut gx, mut dcol] = std::mem::take(&mut a.scratch);
        g.clear();
        if g_logits.is_empty() {
            g.resize(m * self.classes(), 0.0);
        } else {
            g.extend_from_slice(g_logits);
        }
        let mut relu_folded = false;
        let mut mark = a.timing.is_some().then(Instant::now);
        // The layer whose backward ran last, charged when the next one starts.
        let mut last = None;
        for i in (0..n).rev() {
            if let Some(l) = last.replace(i) {
                a.clock(&mut mark, l, 1);
            }
            for (t, tap) in self.taps.iter().enumerate() {
                if tap.after == Some(i) && tap_grads.get(t).is_some_and(|v| !v.is_empty()) {
                    for (gi, v) in g.iter_mut().zip(tap_grads[t]) {
                        *gi += v;
                    }
                }
            }
            let input = self.arch.input_of(&self.shapes, i);
            let x = match i {
                0 if self.norm.is_some() => &a.normed,
                0 => &a.input,
                _ => &a.outs[i - 1],
            };
            // Whether anything below this layer needs its input gradient.
            let need_gx = i > 0 || want.input;
            match self.arch.layers[i] {
                Layer::Conv {
                    out: c,
                    kernel,
                    stride,
                    pad,
                } => {
                    let geo = self.conv_geom(i, kernel, stride, pad);
                    let (pin, pout, patch) = (input.len(), self.shapes[i].len(), geo.patch());
                    let w = self.slot[i].unwrap_or(0);
                    if need_gx {
                        gx.clear();
                        gx.resize(m * pin, 0.0);
                    }
                    if want.weights && winograd::worth_it(&geo) {
                        let parts = &mut a.grad_parts;
                        winograd::weight_grad((x, &g), m, &geo, c, parts, &mut grads[w]);
                    } else if want.weights {
                        // One product over the whole batch when the patches were kept.
                        let chunk = if a.cols_whole { m.max(1) } else { STREAM };
                        for lo in (0..m).step_by(chunk) {
                            let hi = (lo + chunk).min(m);
                            let rows = (hi - lo) * geo.positions();
                            if !a.cols_whole {
                                im2col(&x[lo * pin..hi * pin], hi - lo, &geo, &mut a.cols[i]);
                            }
                            matmul(
                                Mat::rows(&g[lo * pout..hi * pout], rows, c).t(),
                                Mat::rows(&a.cols[i], rows, patch),
                                &mut grads[w],
                                lo > 0,
                            );
                        }
                    }
                    let back = need_gx.then(|| winograd::back_geom(&geo, c)).flatten();
                    if let Some(bg) = back {
                        let u = kernels(&mut a.kernels, (i, 1), self.version, |k| {
                            winograd::transform_weights_back(&self.params[w], input.c, c, k)
                        });
                        let zero = vec![0.0; input.c];
                        let post = winograd::Post::unpooled(&zero, false);
                        winograd::conv(&g, m, &bg, u, input.c, post, &mut gx);
                    } else if need_gx {
                        // The patch gradients a few images at a time, so they are still in
                        // cache when added back onto the input.
                        for lo in (0..m).step_by(STREAM) {
                            let hi = (lo + STREAM).min(m);
                            let rows = (hi - lo) * geo.positions();
                            dcol.resize(rows * patch, 0.0);
                            matmul(
                                Mat::rows(&g[lo * pout..hi * pout], rows, c),
                                Mat::rows(&self.params[w], c, patch),
                                &mut dcol,
                                false,
                            );
                            col2im_add(&dcol, hi - lo, &geo, &mut gx[lo * pin..hi * pin]);
                        }
                    }
                    if want.weights {
                        column_sums(&g, &mut grads[w + 1]);
                    }
                }
                Layer::Linear { out: k } => {
                    let d = input.len();
                    let w = self.slot[i].unwrap_or(0);
                    if want.weights {
                        let (gw, gb) = two(grads, w);
                        matmul(Mat::rows(&g, m, k).t(), Mat::rows(x, m, d), gw, false);
                        column_sums(&g, gb);
                    }
                    if need_gx {
                        gx.resize(m * d, 0.0);
                        matmul(
                            Mat::rows(&g, m, k),
                            Mat::rows(&self.params[w], k, d),
                            &mut gx,
                            false,
                        );
                    }
                }
                Layer::Relu => {
                    if !std::mem::take(&mut relu_folded) {
                        relu_back(&a.outs[i], &mut g);
                    }
                    std::mem::swap(&mut g, &mut gx);
                }
                Layer::MaxPool { window, stride } => {
                    // A ReLU right below: its backward is folded into this one.
                    relu_folded = i > 0
                        && self.arch.layers[i - 1] == Layer::Relu
                        && !self.taps.iter().any(|t| t.after == Some(i - 1));
                    let geo = self.pool_geom(i, window, stride);
                    max_unpool(&g, x, &a.outs[i], relu_folded, m, &geo, &mut gx);
                    if relu_folded {
                        std::mem::swap(&mut g, &mut gx);
                        continue;
                    }
                }
                Layer::Flatten => std::mem::swap(&mut g, &mut gx),
            }
            if !need_gx {
                break;
            }
            std::mem::swap(&mut g, &mut gx);
        }
        if let Some(l) = last {
            a.clock(&mut mark, l, 1);
        }
        let result = if want.input {
            if let Some(norm) = &self.norm {
                norm.back(&mut g);
            }
            if let Some(t) = self.taps.iter().position(|t| t.after.is_none())
                && let Some(extra) = tap_grads.get(t).filter(|v| !v.is_empty())
            {
                for (gi, v) in g.iter_mut().zip(*extra) {
                    *gi += v;
                }
            }
            g.clone()
        } else {
            Vec::new()
        };
        a.scratch = [g, gx, dcol];
        result
    }
}

/// A weight's gradient and its bias's, both borrowed mutably.
fn two(grads: &mut Grads, w: usize) -> (&mut [f32], &mut [f32]) {
    let (a, b) = grads.split_at_mut(w + 1);
    (&mut a[w], &mut b[0])
}

/// Why a network cannot be made from the given parameters.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Arch(#[from] ArchError),
    #[error("the architecture has {0} parameter tensors, {1} were given")]
    Count(usize, usize),
    #[error("{0}: the architecture needs {1} values, {2} were given")]
    Size(String, usize, usize),
}
