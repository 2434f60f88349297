//! The network core (`backwork::net`) against candle, the plain implementation: every layer
//! kind, several shapes, values within relative 1e-5 and gradients (input and weights) within
//! 1e-4 of candle's autograd, and the gradients against central finite differences of candle's
//! forward pass in f64 (issue 14).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use backwork::net::{Acts, Arch, Layer, Net, Shape, Targets, Want, cross_entropy};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Networks that between them have every layer kind: strided and padded convolutions, 1×1
/// kernels, overlapping pools, colour input, several hidden layers.
fn archs() -> Vec<(&'static str, Arch)> {
    vec![
        ("original", Arch::original(10)),
        ("lenet5", Arch::lenet5(10)),
        ("small_rgb", Arch::small_rgb(4)),
        (
            "odd",
            Arch {
                input: Shape { c: 3, h: 9, w: 11 },
                layers: vec![
                    Layer::Conv {
                        out: 5,
                        kernel: 3,
                        stride: 2,
                        pad: 1,
                    },
                    Layer::Relu,
                    Layer::MaxPool {
                        window: 2,
                        stride: Some(1),
                    },
                    Layer::Conv {
                        out: 4,
                        kernel: 1,
                        stride: 1,
                        pad: 0,
                    },
                    Layer::Relu,
                    Layer::Flatten,
                    Layer::Linear { out: 7 },
                    Layer::Relu,
                    Layer::Linear { out: 6 },
                    Layer::Linear { out: 3 },
                ],
            },
        ),
    ]
}

/// Parameters in PyTorch's layout, uniform in ±1/√fan_in (PyTorch's default), biases too.
fn torch_params(arch: &Arch, rng: &mut StdRng) -> Vec<Vec<f32>> {
    arch.params()
        .unwrap()
        .iter()
        .map(|p| {
            let b = 1.0 / (p.fan_in as f32).sqrt();
            let n: usize = p.torch_shape.iter().product();
            (0..n).map(|_| rng.random_range(-b..b)).collect()
        })
        .collect()
}

/// Every layer's output by candle, NCHW (4-D until a flatten), in `dtype`.
fn candle_layers(arch: &Arch, params: &[Tensor], x_nhwc: &Tensor) -> Vec<Tensor> {
    let mut x = x_nhwc.permute((0, 3, 1, 2)).unwrap();
    let mut outs = Vec::new();
    let mut p = params.iter();
    for layer in &arch.layers {
        x = match *layer {
            Layer::Conv { stride, pad, .. } => {
                let w = p.next().unwrap();
                let b = p.next().unwrap();
                let c = b.dim(0).unwrap();
                x.conv2d(w, pad, stride, 1, 1)
                    .unwrap()
                    .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
                    .unwrap()
            }
            Layer::Relu => x.relu().unwrap(),
            Layer::MaxPool { window, stride } => pool(&x, window, stride.unwrap_or(window)),
            Layer::Flatten => x.flatten_from(1).unwrap(),
            Layer::Linear { .. } => {
                let w = p.next().unwrap();
                let b = p.next().unwrap();
                x.flatten_from(1)
                    .unwrap()
                    .matmul(&w.t().unwrap())
                    .unwrap()
                    .broadcast_add(b)
                    .unwrap()
            }
        };
        outs.push(x.clone());
    }
    outs
}

/// Max-pool from maxima of shifted views (candle 0.11's `max_pool2d` backward scales the
/// gradient, see `model::conv_relu_pool`): windows that tile (stride = window) or slide by 1.
fn pool(x: &Tensor, k: usize, s: usize) -> Tensor {
    let (n, c, h, w) = x.dims4().unwrap();
    let (ho, wo) = ((h - k) / s + 1, (w - k) / s + 1);
    if s == k {
        let x = x
            .narrow(2, 0, ho * k)
            .unwrap()
            .narrow(3, 0, wo * k)
            .unwrap();
        return x
            .reshape((n, c, ho, k, wo, k))
            .unwrap()
            .max(5)
            .unwrap()
            .max(3)
            .unwrap();
    }
    assert_eq!(s, 1, "the reference pools tile or slide by one");
    let mut best: Option<Tensor> = None;
    for dy in 0..k {
        for dx in 0..k {
            let v = x.narrow(2, dy, ho).unwrap().narrow(3, dx, wo).unwrap();
            best = Some(match best {
                None => v,
                Some(b) => b.maximum(&v).unwrap(),
            });
        }
    }
    best.unwrap()
}

/// A candle tensor of layer output flattened in the core's NHWC order, as f64.
fn nhwc(t: &Tensor) -> Vec<f64> {
    let t = if t.rank() == 4 {
        t.permute((0, 2, 3, 1)).unwrap()
    } else {
        t.clone()
    };
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// max |a − b| ≤ tol · max |b|: relative to the tensor's scale.
fn assert_close(what: &str, a: &[f32], b: &[f64], tol: f64) {
    if let Err(e) = close(a, b, tol) {
        panic!("{what}: {e}");
    }
}

fn close(a: &[f32], b: &[f64], tol: f64) -> Result<(), String> {
    let what = "";
    assert_eq!(a.len(), b.len(), "{what}: sizes");
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    let err = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()));
    if err <= tol * scale {
        Ok(())
    } else {
        Err(format!("{what}max error {err:e} against scale {scale:e}"))
    }
}

struct Case {
    arch: Arch,
    torch: Vec<Vec<f32>>,
    x: Vec<f32>,
    labels: Vec<u8>,
    /// A random direction per tap: the loss is Σ ⟨tap, r⟩ + cross-entropy.
    r: Vec<Vec<f32>>,
    m: usize,
}

fn case(arch: Arch, seed: u64, m: usize) -> Case {
    let mut rng = StdRng::seed_from_u64(seed);
    let torch = torch_params(&arch, &mut rng);
    let x: Vec<f32> = (0..m * arch.input.len()).map(|_| rng.random()).collect();
    let labels = (0..m)
        .map(|_| rng.random_range(0..arch.classes()) as u8)
        .collect();
    let r = arch
        .taps()
        .unwrap()
        .iter()
        .map(|t| {
            let s = 1.0 / (t.dim as f32).sqrt();
            (0..m * t.dim).map(|_| rng.random_range(-s..s)).collect()
        })
        .collect();
    Case {
        arch,
        torch,
        x,
        labels,
        r,
        m,
    }
}

impl Case {
    /// The loss by candle in `dtype`, with the input and parameters as variables.
    fn candle_loss(&self, dtype: DType, x: &[f64], torch: &[Vec<f64>]) -> (Tensor, Var, Vec<Var>) {
        let dev = &Device::Cpu;
        let s = self.arch.input;
        let xv = Var::from_tensor(
            &Tensor::from_slice(x, (self.m, s.h, s.w, s.c), dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap(),
        )
        .unwrap();
        let specs = self.arch.params().unwrap();
        let pv: Vec<Var> = torch
            .iter()
            .zip(&specs)
            .map(|(v, p)| {
                let t = Tensor::from_slice(v, p.torch_shape.as_slice(), dev).unwrap();
                Var::from_tensor(&t.to_dtype(dtype).unwrap()).unwrap()
            })
            .collect();
        let ps: Vec<Tensor> = pv.iter().map(|v| v.as_tensor().clone()).collect();
        let outs = candle_layers(&self.arch, &ps, xv.as_tensor());
        let mut loss = Tensor::zeros((), dtype, dev).unwrap();
        for (tap, r) in self.arch.taps().unwrap().iter().zip(&self.r) {
            let a = match tap.after {
                None => xv.as_tensor().flatten_from(1).unwrap(),
                Some(l) => {
                    let t = &outs[l];
                    let t = if t.rank() == 4 {
                        t.permute((0, 2, 3, 1)).unwrap()
                    } else {
                        t.clone()
                    };
                    t.flatten_from(1).unwrap()
                }
            };
            let r = Tensor::from_slice(r, (self.m, tap.dim), dev)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            loss = (loss + (a * r).unwrap().sum_all().unwrap()).unwrap();
        }
        let labels: Vec<u32> = self.labels.iter().map(|&l| l as u32).collect();
        let y = Tensor::from_slice(&labels, self.m, dev).unwrap();
        let ce = candle_nn::loss::cross_entropy(outs.last().unwrap(), &y).unwrap();
        ((loss + ce).unwrap(), xv, pv)
    }

    /// The input and parameters in f64, for [`Case::candle_loss`].
    fn wide(&self) -> (Vec<f64>, Vec<Vec<f64>>) {
        let w = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
        (w(&self.x), self.torch.iter().map(|t| w(t)).collect())
    }

    /// The core's forward, its gradients (input, weights in PyTorch's layout) and loss.
    fn core(&self) -> (Net, Acts, Vec<f32>, Vec<Vec<f32>>) {
        let net = Net::from_torch(self.arch.clone(), self.torch.clone()).unwrap();
        let mut a = if self.m.is_multiple_of(2) {
            Acts::for_training()
        } else {
            Acts::default()
        };
        net.forward(&self.x, &mut a);
        let (_, g_logits) = cross_entropy(a.logits(), net.classes(), &Targets::Hard(&self.labels));
        let taps: Vec<&[f32]> = self.r.iter().map(|v| v.as_slice()).collect();
        let mut grads = net.zero_grads();
        let want = Want {
            input: true,
            weights: true,
        };
        let gx = net.backward(&mut a, &g_logits, &taps, want, &mut grads);
        let gw = net.torch_layout(&grads);
        (net, a, gx, gw)
    }
}

#[test]
fn forward_matches_candle_layer_by_layer() {
    for (name, arch) in archs() {
        let c = case(arch, 1, 3);
        let (net, a, _, _) = c.core();
        let (_, xv, pv) = {
            let (x, t) = c.wide();
            c.candle_loss(DType::F32, &x, &t)
        };
        let ps: Vec<Tensor> = pv.iter().map(|v| v.as_tensor().clone()).collect();
        let outs = candle_layers(&c.arch, &ps, xv.as_tensor());
        let mut seen = 0;
        for (i, reference) in outs.iter().enumerate() {
            // A flatten orders (h, w, c) here against (c, h, w) there: it is checked through
            // the next layer; a convolution's output a ReLU took over, through the ReLU.
            let Some(core) = a.layer(i).filter(|_| c.arch.layers[i] != Layer::Flatten) else {
                continue;
            };
            seen += 1;
            // Relative to the larger of this layer's scale and its input's: a ReLU or pool of
            // values that cancel is only as exact as the sum before it.
            let want = nhwc(reference);
            let input_scale = match i {
                0 => 0.0,
                _ => nhwc(&outs[i - 1]).iter().fold(0f64, |m, v| m.max(v.abs())),
            };
            let own = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            let tol = 1e-5 * input_scale.max(own) / own.max(1e-30);
            assert_close(&format!("{name} layer {i}"), core, &want, tol);
        }
        assert!(seen * 2 >= outs.len(), "{name}: {seen} layers compared");
        let probs = candle_nn::ops::softmax_last_dim(outs.last().unwrap()).unwrap();
        assert_close(&format!("{name} probs"), &a.probs, &nhwc(&probs), 1e-5);
        assert_eq!(net.taps().len(), c.r.len());
    }
}

#[test]
fn the_original_network_matches_the_models_own_forward() {
    let c = case(Arch::original(10), 2, 4);
    let (net, a, _, _) = c.core();
    let cnn = backwork::model::Cnn::from_net(&net).unwrap();
    let x = Tensor::from_slice(&c.x, (4, 784), &Device::Cpu).unwrap();
    let taps = cnn.forward_taps(&x).unwrap();
    assert_close("conv0", net.tap(&a, 1), &nhwc(&taps.conv0), 1e-5);
    assert_close("conv1", net.tap(&a, 2), &nhwc(&taps.conv1), 1e-5);
    assert_close("fc", net.tap(&a, 3), &nhwc(&taps.fc), 1e-5);
    assert_close("logits", a.logits(), &nhwc(&taps.logits), 1e-5);
    // And the round trip through candle's tensors keeps every weight.
    assert_eq!(cnn.to_net().unwrap().params(), net.params());
}

#[test]
fn gradients_match_candle_autograd() {
    let mut failures = Vec::new();
    for (name, arch) in archs() {
        let c = case(arch, 3, 3);
        let (_, _, gx, gw) = c.core();
        let (loss, xv, pv) = {
            let (x, t) = c.wide();
            c.candle_loss(DType::F32, &x, &t)
        };
        let store = loss.backward().unwrap();
        // The input gradient: x is laid out (n, h, w, c) on both sides already.
        let want_x: Vec<f64> = nhwc(&store.get(xv.as_tensor()).unwrap().flatten_from(1).unwrap());
        if let Err(e) = close(&gx, &want_x, 1e-4) {
            failures.push(format!("{name} d/dx: {e}"));
        }
        for ((p, g), spec) in pv.iter().zip(&gw).zip(c.arch.params().unwrap()) {
            let want: Vec<f64> = store
                .get(p.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1()
                .unwrap();
            if let Err(e) = close(g, &want, 1e-4) {
                failures.push(format!("{name} d/d{}: {e}", spec.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn gradients_match_finite_differences_in_f64() {
    for (name, arch) in archs() {
        let c = case(arch, 4, 2);
        let (_, _, gx, gw) = c.core();
        let (x0, t0) = c.wide();
        let loss_at = |x: &[f64], torch: &[Vec<f64>]| -> f64 {
            let (l, _, _) = c.candle_loss(DType::F64, x, torch);
            l.to_scalar::<f64>().unwrap()
        };
        let mut rng = StdRng::seed_from_u64(5);
        let h = 1e-6;
        // Central differences in f64 with a step of 1e-6: exact to about 1e-8 relative,
        // unless a ReLU or pool kink lies within the step, which on random values is rare:
        // allow one miss in the twelve probes per tensor.
        let mut check = |what: String, g: &[f32], perturb: &mut dyn FnMut(usize, f64) -> f64| {
            let scale = g.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let mut misses = 0;
            let mut worst = String::new();
            for _ in 0..12 {
                let i = rng.random_range(0..g.len());
                let fd = (perturb(i, h) - perturb(i, -h)) / (2.0 * h);
                if (fd - g[i] as f64).abs() > 1e-3 * scale.max(1e-3) {
                    misses += 1;
                    worst = format!("at {i}: {fd} by differences, {} here", g[i]);
                }
            }
            assert!(misses <= 1, "{what}: {misses} of 12 probes off, {worst}");
        };
        check(format!("{name} d/dx"), &gx, &mut |i, d| {
            let mut x = x0.clone();
            x[i] += d;
            loss_at(&x, &t0)
        });
        let specs = c.arch.params().unwrap();
        for (k, g) in gw.iter().enumerate() {
            check(format!("{name} d/d{}", specs[k].name), g, &mut |i, d| {
                let mut t = t0.clone();
                t[k][i] += d;
                loss_at(&x0, &t)
            });
        }
    }
}

#[test]
fn input_only_and_weights_only_passes_agree_with_the_full_pass() {
    let c = case(Arch::lenet5(10), 6, 3);
    let (net, mut a, gx, gw) = c.core();
    let (_, g_logits) = cross_entropy(a.logits(), 10, &Targets::Hard(&c.labels));
    let taps: Vec<&[f32]> = c.r.iter().map(|v| v.as_slice()).collect();
    let mut none = Vec::new();
    let only_x = Want {
        input: true,
        weights: false,
    };
    assert_eq!(
        net.backward(&mut a, &g_logits, &taps, only_x, &mut none),
        gx
    );
    let mut grads = net.zero_grads();
    let only_w = Want {
        input: false,
        weights: true,
    };
    assert!(
        net.backward(&mut a, &g_logits, &taps, only_w, &mut grads)
            .is_empty()
    );
    assert_eq!(net.torch_layout(&grads), gw);
}

#[test]
fn kept_and_streamed_patches_give_the_same_gradients() {
    // 20 images: more than the 16 a streamed pass patches at once, so both paths cut chunks.
    let c = case(Arch::lenet5(10), 7, 20);
    let net = Net::from_torch(c.arch.clone(), c.torch.clone()).unwrap();
    let want = Want {
        input: true,
        weights: true,
    };
    let run = |mut a: Acts| {
        net.forward(&c.x, &mut a);
        let (_, g_logits) = cross_entropy(a.logits(), 10, &Targets::Hard(&c.labels));
        let mut grads = net.zero_grads();
        let gx = net.backward(&mut a, &g_logits, &[], want, &mut grads);
        (gx, grads)
    };
    let (gx_kept, gw_kept) = run(Acts::for_training());
    let (gx_streamed, gw_streamed) = run(Acts::default());
    assert_eq!(gx_kept, gx_streamed);
    for (a, b) in gw_kept.iter().zip(&gw_streamed) {
        let wide: Vec<f64> = b.iter().map(|&v| v as f64).collect();
        assert_close("weights", a, &wide, 1e-5);
    }
}

/// A record keeps each layer's transformed kernels between passes; weights changed through
/// `params_mut` (as every optimiser step does) must be transformed again, and a second network
/// with the same record must not get the first one's kernels.
#[test]
fn kept_kernels_follow_the_weights() {
    let mut rng = StdRng::seed_from_u64(9);
    let arch = Arch::original(10);
    let x: Vec<f32> = (0..3 * 784).map(|_| rng.random_range(0.0..1.0)).collect();
    let mut net = Net::from_torch(arch.clone(), torch_params(&arch, &mut rng)).unwrap();
    let other = Net::from_torch(arch.clone(), torch_params(&arch, &mut rng)).unwrap();
    let fresh = |n: &Net| {
        let mut a = Acts::default();
        n.forward(&x, &mut a);
        a.logits().to_vec()
    };
    let mut kept = Acts::default();
    net.forward(&x, &mut kept);
    assert_eq!(kept.logits(), fresh(&net));
    // Both convolutions' weights scaled: the Winograd and the direct path's kernels.
    for p in [0, 2] {
        for v in &mut net.params_mut()[p] {
            *v *= -1.5;
        }
    }
    net.forward(&x, &mut kept);
    assert_eq!(kept.logits(), fresh(&net), "after params_mut");
    other.forward(&x, &mut kept);
    assert_eq!(kept.logits(), fresh(&other), "another network");
}

/// A forward-only record stores a convolution's outputs straight through its ReLU and pool
/// (the direct path with any pool, the Winograd path with a 2×2 one): every tap and the
/// logits are the same bits as the full pass's (on the original network, and on one with a
/// 3×3 pool of stride 2 and a Winograd output with odd sides, so the pool drops a row of
/// tiles), and a backward after it gives the full pass's gradients.
#[test]
fn forward_only_passes_fuse_the_pool_and_change_nothing() {
    let odd = Arch {
        input: Shape { c: 2, h: 15, w: 13 },
        layers: vec![
            Layer::Conv {
                out: 16,
                kernel: 3,
                stride: 1,
                pad: 1,
            },
            Layer::Relu,
            Layer::MaxPool {
                window: 3,
                stride: Some(2),
            },
            Layer::Conv {
                out: 20,
                kernel: 5,
                stride: 1,
                pad: 2,
            },
            Layer::Relu,
            Layer::MaxPool {
                window: 2,
                stride: None,
            },
            Layer::Flatten,
            Layer::Linear { out: 5 },
        ],
    };
    // A fused convolution then one on the patches' path whose ReLU is not folded (the
    // fused layer must not leave that ReLU marked done: it was, for a Fashion-MNIST network).
    let conv_relu_pool = |out: usize| {
        [
            Layer::Conv {
                out,
                kernel: 3,
                stride: 1,
                pad: 1,
            },
            Layer::Relu,
            Layer::MaxPool {
                window: 2,
                stride: Some(2),
            },
        ]
    };
    let mut layers = [conv_relu_pool(16), conv_relu_pool(32)].concat();
    layers.extend([Layer::Flatten, Layer::Linear { out: 4 }]);
    let then_patches = Arch {
        input: Shape { c: 1, h: 12, w: 12 },
        layers,
    };
    // (network, pools fused): the original and `odd` have a direct convolution then a
    // Winograd one.
    for (name, arch, pools) in [
        ("original", Arch::original(10), 2),
        ("odd", odd, 2),
        ("then_patches", then_patches, 1),
    ] {
        let c = case(arch, 11, 5);
        let net = Net::from_torch(c.arch.clone(), c.torch.clone()).unwrap();
        let k = net.classes();
        let taps: Vec<&[f32]> = c.r.iter().map(|v| v.as_slice()).collect();
        let want = Want {
            input: true,
            weights: true,
        };
        let run = |mut a: Acts| {
            net.forward(&c.x, &mut a);
            let tap_values: Vec<Vec<f32>> =
                (0..taps.len()).map(|t| net.tap(&a, t).to_vec()).collect();
            let logits = a.logits().to_vec();
            // Layers whose output the record holds: the fused pass skips the ReLU's.
            let held = (0..c.arch.layers.len())
                .filter(|&i| a.layer(i).is_some())
                .count();
            let (_, g) = cross_entropy(a.logits(), k, &Targets::Hard(&c.labels));
            let mut grads = net.zero_grads();
            let gx = net.backward(&mut a, &g, &taps, want, &mut grads);
            (tap_values, logits, gx, grads, held)
        };
        let full = run(Acts::default());
        let fused = run(Acts::inference());
        assert_eq!(fused.4 + pools, full.4, "{name}: pools fused");
        assert!(fused.0 == full.0, "{name}: taps differ");
        assert!(fused.1 == full.1, "{name}: logits differ");
        assert!(fused.2 == full.2, "{name}: input gradient differs");
        assert!(fused.3 == full.3, "{name}: weight gradients differ");
    }
}

#[test]
fn a_normalising_network_is_the_plain_one_on_normalised_images_with_its_input_gradient_scaled() {
    // torchvision's Normalize: x' = (x − mean[c]) / std[c], channels innermost (NHWC). With
    // it, the logits are the plain network's on x', the layer outputs too, and d cost / d x is
    // the plain d cost / d x' divided by std[c], plus the `inputs` tap's own gradient (that
    // tap stays on the image's values, as the pixel box does).
    for (name, arch) in archs() {
        let ch = arch.input.c;
        let c = case(arch.clone(), 9, 3);
        let mean: Vec<f32> = (0..ch).map(|k| 0.1307 + 0.2 * k as f32).collect();
        let std: Vec<f32> = (0..ch).map(|k| 0.3081 + 0.1 * k as f32).collect();
        let xn: Vec<f32> =
            c.x.iter()
                .enumerate()
                .map(|(i, v)| (v - mean[i % ch]) / std[i % ch])
                .collect();
        let plain = Net::from_torch(arch.clone(), c.torch.clone()).unwrap();
        let mut normed = plain.clone();
        let norm = backwork::net::InputNorm::new(&mean, &std, ch).unwrap();
        normed.set_input_norm(Some(norm)).unwrap();
        let (mut a, mut b) = (Acts::for_training(), Acts::for_training());
        plain.forward(&xn, &mut a);
        normed.forward(&c.x, &mut b);
        assert_eq!(a.logits(), b.logits(), "{name}");
        assert_eq!(normed.tap(&b, 0), c.x.as_slice(), "{name}: the inputs tap");
        let (_, g_logits) = cross_entropy(a.logits(), arch.classes(), &Targets::Hard(&c.labels));
        let mut taps: Vec<&[f32]> = c.r.iter().map(|v| v.as_slice()).collect();
        let want = Want {
            input: true,
            weights: false,
        };
        let none: &[f32] = &[];
        let input_tap = std::mem::replace(&mut taps[0], none);
        let gp = plain.backward(&mut a, &g_logits, &taps, want, &mut Vec::new());
        taps[0] = input_tap;
        let gn = normed.backward(&mut b, &g_logits, &taps, want, &mut Vec::new());
        for (i, (n, p)) in gn.iter().zip(&gp).enumerate() {
            let want = p / std[i % ch] + input_tap[i];
            assert!(
                (n - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{name} [{i}]: {n} vs {want}"
            );
        }
        // A forward-only pass (pools fused into the convolutions) gives the same logits.
        let mut f = Acts::inference();
        normed.forward(&c.x, &mut f);
        assert_eq!(f.logits(), b.logits(), "{name}: forward only");
    }
    // Refused: wrong channel counts, a zero or negative std, a mean that is not a number.
    use backwork::net::InputNorm;
    assert!(
        InputNorm::new(&[0.5, 0.5], &[0.2], 3)
            .unwrap_err()
            .contains("2 mean values")
    );
    assert!(
        InputNorm::new(&[0.5], &[0.0], 1)
            .unwrap_err()
            .contains("std of 0")
    );
    assert!(InputNorm::new(&[0.5], &[-1.0], 1).is_err());
    assert!(InputNorm::new(&[f32::NAN], &[1.0], 1).is_err());
}
