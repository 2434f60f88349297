//! The description of a sequential network: its input shape, its layers, the shapes they
//! produce, its parameters and its named taps.
//!
//! Activations are laid out channels last (NHWC: height, width, channel), so a convolution's
//! patch is a contiguous run of memory. A flatten therefore orders features (h, w, c), not
//! PyTorch's (c, h, w); the conversions in `model` permute the first linear layer's columns.

use serde::{Deserialize, Serialize};

/// One layer. Convolutions and max-pools have no padding in the pool and zero padding in the
/// convolution; pools drop a partial window at the edge (PyTorch's floor mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Layer {
    Conv {
        out: usize,
        kernel: usize,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default)]
        pad: usize,
    },
    Relu,
    MaxPool {
        window: usize,
        #[serde(default)]
        stride: Option<usize>,
    },
    Flatten,
    Linear {
        out: usize,
    },
}

impl Layer {
    /// The layer in a few characters, as [`Arch::summary`] writes it: `conv32/5p2`, `relu`,
    /// `pool2`, `flatten`, `fc1024`.
    pub fn short_name(&self) -> String {
        match *self {
            Layer::Conv {
                out,
                kernel,
                stride,
                pad,
            } => {
                let mut t = format!("conv{out}/{kernel}");
                if stride != 1 {
                    t += &format!("s{stride}");
                }
                if pad != 0 {
                    t += &format!("p{pad}");
                }
                t
            }
            Layer::Relu => "relu".into(),
            Layer::MaxPool { window, stride } => match stride {
                Some(s) if s != window => format!("pool{window}s{s}"),
                _ => format!("pool{window}"),
            },
            Layer::Flatten => "flatten".into(),
            Layer::Linear { out } => format!("fc{out}"),
        }
    }
}

fn one() -> usize {
    1
}

/// A tensor shape of one image: channels, height, width (a flat vector is (n, 1, 1)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn len(&self) -> usize {
        self.c * self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.h == 1 && self.w == 1 {
            write!(f, "{}", self.c)
        } else {
            write!(f, "{}×{}×{}", self.c, self.h, self.w)
        }
    }
}

/// A sequential network: input shape and layers, in order. The last layer is a linear one
/// whose outputs are the logits (a softmax follows in the cost, not as a layer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arch {
    pub input: Shape,
    pub layers: Vec<Layer>,
}

/// What a tap is the output of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TapKind {
    /// The input image.
    Input,
    /// A convolution block (a convolution with the ReLUs and pools that follow it).
    Conv,
    /// A hidden linear layer, before its ReLU: the cost may take its distance per neuron.
    Linear,
}

/// A named place in the network whose activations the backwork cost looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tap {
    /// `inputs`, `conv0`, `conv1`, …, `fc`, `fc1`, … (the cost's term names of ALGORITHM.md §3).
    pub name: String,
    pub kind: TapKind,
    /// The layer whose output it is; `None` for the input.
    pub after: Option<usize>,
    /// Values per image.
    pub dim: usize,
}

/// A parameter tensor of a layer, under its file name (`conv0.weight`, `softmax.bias`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    /// The layer it belongs to.
    pub layer: usize,
    /// Its shape in PyTorch's layout: `[out, in, k, k]` for a convolution's weight, `[out, in]`
    /// for a linear one, `[out]` for a bias.
    pub torch_shape: Vec<usize>,
    /// Inputs that feed one output (for initialisation).
    pub fan_in: usize,
}

/// Why an architecture cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchError {
    #[error("layer {index} ({layer:?}) does not fit its input {input}: {why}")]
    Misfit {
        index: usize,
        layer: Layer,
        input: Shape,
        why: &'static str,
    },
    #[error("the network must end with a linear layer (its outputs are the logits)")]
    NoLogits,
    #[error("the network is too large: {0} values per image")]
    TooLarge(usize),
    #[error("the network is too large: {0} weights (at most 2^28)")]
    TooManyParams(usize),
}

/// At most this many values in one layer's output per image (a 512×512×64 map): larger
/// networks are refused before any buffer is sized from them.
const MAX_VALUES: usize = 1 << 24;

/// At most this many weights (1 GB of f32), checked before any is allocated: the shipped
/// network has 3.3 million.
const MAX_PARAMS: usize = 1 << 28;

impl Arch {
    /// The network of ALGORITHM.md §1 with `classes` outputs: two 5×5 convolutions (32 and 64
    /// channels, padding 2) each with ReLU and a 2×2 pool, a 1024-unit hidden layer, the
    /// logits.
    pub fn original(classes: usize) -> Self {
        Self {
            input: Shape { c: 1, h: 28, w: 28 },
            layers: vec![
                conv(32, 5, 2),
                Layer::Relu,
                pool(2),
                conv(64, 5, 2),
                Layer::Relu,
                pool(2),
                Layer::Flatten,
                Layer::Linear { out: 1024 },
                Layer::Relu,
                Layer::Linear { out: classes },
            ],
        }
    }

    /// LeNet-5 on 28×28 grey images (LeCun et al. 1998 as PyTorch users write it: the first
    /// convolution padded to keep 28×28, max-pools, ReLU).
    pub fn lenet5(classes: usize) -> Self {
        Self {
            input: Shape { c: 1, h: 28, w: 28 },
            layers: vec![
                conv(6, 5, 2),
                Layer::Relu,
                pool(2),
                conv(16, 5, 0),
                Layer::Relu,
                pool(2),
                Layer::Flatten,
                Layer::Linear { out: 120 },
                Layer::Relu,
                Layer::Linear { out: 84 },
                Layer::Relu,
                Layer::Linear { out: classes },
            ],
        }
    }

    /// A small network for 32×32 colour images: three 3×3 convolutions (16, 32, 64
    /// channels) with ReLU and 2×2 pools, a 128-unit hidden layer, the logits.
    pub fn small_rgb(classes: usize) -> Self {
        Self {
            input: Shape { c: 3, h: 32, w: 32 },
            layers: vec![
                conv(16, 3, 1),
                Layer::Relu,
                pool(2),
                conv(32, 3, 1),
                Layer::Relu,
                pool(2),
                conv(64, 3, 1),
                Layer::Relu,
                pool(2),
                Layer::Flatten,
                Layer::Linear { out: 128 },
                Layer::Relu,
                Layer::Linear { out: classes },
            ],
        }
    }

    /// The output shape of every layer, in order, after checking that each layer fits its
    /// input and the network ends with a linear layer.
    pub fn shapes(&self) -> Result<Vec<Shape>, ArchError> {
        let shapes = self.layer_shapes()?;
        if !matches!(self.layers.last(), Some(Layer::Linear { .. })) {
            return Err(ArchError::NoLogits);
        }
        Ok(shapes)
    }

    /// The output shape of every layer, in order, after checking that each layer fits its
    /// input (a network being built need not end with its logits yet).
    pub fn layer_shapes(&self) -> Result<Vec<Shape>, ArchError> {
        let mut shapes = Vec::with_capacity(self.layers.len());
        let mut s = self.input;
        check_size(s)?;
        for (index, &layer) in self.layers.iter().enumerate() {
            let misfit = |why| ArchError::Misfit {
                index,
                layer,
                input: s,
                why,
            };
            s = match layer {
                Layer::Conv {
                    out,
                    kernel,
                    stride,
                    pad,
                } => {
                    if out == 0 || kernel == 0 || stride == 0 {
                        return Err(misfit("zero channels, kernel or stride"));
                    }
                    let (h, w) = (s.h + 2 * pad, s.w + 2 * pad);
                    if kernel > h || kernel > w {
                        return Err(misfit("kernel larger than the padded input"));
                    }
                    if pad >= kernel {
                        return Err(misfit("padding must be smaller than the kernel"));
                    }
                    Shape {
                        c: out,
                        h: (h - kernel) / stride + 1,
                        w: (w - kernel) / stride + 1,
                    }
                }
                Layer::Relu => s,
                Layer::MaxPool { window, stride } => {
                    let stride = stride.unwrap_or(window);
                    if window == 0 || stride == 0 || window * window > 255 {
                        return Err(misfit("pool window must be 1 to 15, stride at least 1"));
                    }
                    if window > s.h || window > s.w {
                        return Err(misfit("pool window larger than the input"));
                    }
                    Shape {
                        c: s.c,
                        h: (s.h - window) / stride + 1,
                        w: (s.w - window) / stride + 1,
                    }
                }
                Layer::Flatten => Shape {
                    c: s.len(),
                    h: 1,
                    w: 1,
                },
                Layer::Linear { out } => {
                    if s.h != 1 || s.w != 1 {
                        return Err(misfit("a linear layer needs a flat input (add flatten)"));
                    }
                    if out == 0 {
                        return Err(misfit("zero outputs"));
                    }
                    Shape { c: out, h: 1, w: 1 }
                }
            };
            check_size(s)?;
            let params = match layer {
                Layer::Conv { kernel, .. } => {
                    kernel * kernel * shapes.last().unwrap_or(&self.input).c
                }
                Layer::Linear { .. } => shapes.last().unwrap_or(&self.input).len(),
                _ => 0,
            };
            check_size(Shape {
                c: params,
                h: 1,
                w: 1,
            })?;
            shapes.push(s);
        }
        Ok(shapes)
    }

    /// The shape a layer reads.
    pub fn input_of(&self, shapes: &[Shape], layer: usize) -> Shape {
        if layer == 0 {
            self.input
        } else {
            shapes[layer - 1]
        }
    }

    /// Number of output classes (the last linear layer's width).
    pub fn classes(&self) -> usize {
        match self.layers.last() {
            Some(Layer::Linear { out }) => *out,
            _ => 0,
        }
    }

    /// The name of a built-in architecture this one is (`original`, `lenet5`, `small-rgb`),
    /// if any.
    pub fn builtin_name(&self) -> Option<&'static str> {
        let k = self.classes();
        [
            ("original", Self::original(k)),
            ("lenet5", Self::lenet5(k)),
            ("small-rgb", Self::small_rgb(k)),
        ]
        .into_iter()
        .find(|(_, a)| a.layers == self.layers)
        .map(|(n, _)| n)
    }

    /// The same layers on inputs of `input` (a built-in network for another dataset: its
    /// convolutions take the input's channels and its first linear layer the features).
    pub fn with_input(mut self, input: Shape) -> Self {
        self.input = input;
        self
    }

    /// The built-in architecture named `name` (`original`, `lenet5`, `small-rgb`) with
    /// `classes` outputs.
    pub fn builtin(name: &str, classes: usize) -> Option<Self> {
        match name {
            "original" => Some(Self::original(classes)),
            "lenet5" => Some(Self::lenet5(classes)),
            "small-rgb" => Some(Self::small_rgb(classes)),
            _ => None,
        }
    }

    /// One line: the built-in name if it is one, then the input and the layers, e.g.
    /// `lenet5: 1×28×28 conv6/5 relu pool2 conv16/5 relu pool2 flatten fc120 relu fc84 relu fc10`.
    pub fn summary(&self) -> String {
        let mut parts = vec![self.input.to_string()];
        for l in &self.layers {
            parts.push(l.short_name());
        }
        let layers = parts.join(" ");
        match self.builtin_name() {
            Some(n) => format!("{n}: {layers}"),
            None => layers,
        }
    }

    /// The taps, in order: the input (named `inputs`), the output of each convolution block (a convolution
    /// with the ReLUs and pools that follow it), each hidden linear layer before its ReLU. The
    /// last linear layer feeds the softmax and is not a tap.
    pub fn taps(&self) -> Result<Vec<Tap>, ArchError> {
        let shapes = self.shapes()?;
        let mut taps = vec![Tap {
            name: "inputs".into(),
            kind: TapKind::Input,
            after: None,
            dim: self.input.len(),
        }];
        let last = self.layers.len() - 1;
        let (mut convs, mut linears) = (0, 0);
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                Layer::Conv { .. } => {
                    // The block ends before the next convolution, flatten or linear layer.
                    let end = (i + 1..self.layers.len())
                        .find(|&j| {
                            matches!(
                                self.layers[j],
                                Layer::Conv { .. } | Layer::Flatten | Layer::Linear { .. }
                            )
                        })
                        .unwrap_or(self.layers.len())
                        - 1;
                    taps.push(Tap {
                        name: format!("conv{convs}"),
                        kind: TapKind::Conv,
                        after: Some(end),
                        dim: shapes[end].len(),
                    });
                    convs += 1;
                }
                Layer::Linear { .. } if i != last => {
                    taps.push(Tap {
                        name: linear_name(linears),
                        kind: TapKind::Linear,
                        after: Some(i),
                        dim: shapes[i].len(),
                    });
                    linears += 1;
                }
                _ => {}
            }
        }
        Ok(taps)
    }

    /// Every parameter tensor, in file order (each layer's weight, then its bias).
    pub fn params(&self) -> Result<Vec<Param>, ArchError> {
        let shapes = self.shapes()?;
        let last = self.layers.len() - 1;
        let (mut convs, mut linears) = (0, 0);
        let mut params = Vec::new();
        let mut total = 0usize;
        for (i, layer) in self.layers.iter().enumerate() {
            let input = self.input_of(&shapes, i);
            let (name, w_shape, fan_in) = match *layer {
                Layer::Conv { out, kernel, .. } => {
                    convs += 1;
                    (
                        format!("conv{}", convs - 1),
                        vec![out, input.c, kernel, kernel],
                        input.c.saturating_mul(kernel).saturating_mul(kernel),
                    )
                }
                Layer::Linear { out } => {
                    let name = if i == last {
                        "softmax".to_string()
                    } else {
                        linears += 1;
                        linear_name(linears - 1)
                    };
                    (name, vec![out, input.len()], input.len())
                }
                _ => continue,
            };
            total = w_shape
                .iter()
                .fold(1usize, |a, d| a.saturating_mul(*d))
                .saturating_add(w_shape[0])
                .saturating_add(total);
            if total > MAX_PARAMS {
                return Err(ArchError::TooManyParams(total));
            }
            params.push(Param {
                name: format!("{name}.bias"),
                layer: i,
                torch_shape: vec![w_shape[0]],
                fan_in,
            });
            params.insert(
                params.len() - 1,
                Param {
                    name: format!("{name}.weight"),
                    layer: i,
                    torch_shape: w_shape,
                    fan_in,
                },
            );
        }
        Ok(params)
    }

    /// Multiply-adds of one image's forward pass.
    pub fn forward_macs(&self) -> Result<usize, ArchError> {
        let shapes = self.shapes()?;
        let mut macs = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            let input = self.input_of(&shapes, i);
            macs += match *layer {
                Layer::Conv { kernel, .. } => shapes[i].len() * kernel * kernel * input.c,
                Layer::Linear { out } => out * input.len(),
                _ => 0,
            };
        }
        Ok(macs)
    }
}

fn check_size(s: Shape) -> Result<(), ArchError> {
    let n = s.c.saturating_mul(s.h).saturating_mul(s.w);
    if n > MAX_VALUES {
        Err(ArchError::TooLarge(n))
    } else {
        Ok(())
    }
}

fn linear_name(i: usize) -> String {
    if i == 0 {
        "fc".to_string()
    } else {
        format!("fc{i}")
    }
}

fn conv(out: usize, kernel: usize, pad: usize) -> Layer {
    Layer::Conv {
        out,
        kernel,
        stride: 1,
        pad,
    }
}

fn pool(window: usize) -> Layer {
    Layer::MaxPool {
        window,
        stride: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_has_the_four_taps_and_eight_weights_of_algorithm_md() {
        let a = Arch::original(10);
        let taps = a.taps().unwrap();
        let names: Vec<_> = taps.iter().map(|t| (t.name.as_str(), t.dim)).collect();
        // ALGORITHM.md §1: input 784, conv0 32×14×14, conv1 64×7×7, fc 1024.
        assert_eq!(
            names,
            [
                ("inputs", 784),
                ("conv0", 6272),
                ("conv1", 3136),
                ("fc", 1024)
            ]
        );
        let params: Vec<_> = a.params().unwrap().into_iter().map(|p| p.name).collect();
        assert_eq!(params, crate::net::ORIGINAL_WEIGHT_NAMES);
        // 28·28·32·25 + 14·14·64·800 + 3136·1024 + 1024·10
        assert_eq!(
            a.forward_macs().unwrap(),
            627_200 + 10_035_200 + 3_211_264 + 10_240
        );
    }

    #[test]
    fn lenet5_and_the_colour_network_have_their_shapes() {
        let l = Arch::lenet5(10);
        let taps: Vec<_> = l.taps().unwrap().into_iter().map(|t| t.dim).collect();
        // 1×28×28, 6×14×14, 16×5×5, 120, 84
        assert_eq!(taps, [784, 1176, 400, 120, 84]);
        let c = Arch::small_rgb(4);
        let taps: Vec<_> = c.taps().unwrap().into_iter().map(|t| t.dim).collect();
        // 3×32×32, 16×16×16, 32×8×8, 64×4×4, 128
        assert_eq!(taps, [3072, 4096, 2048, 1024, 128]);
    }

    #[test]
    fn a_network_of_too_many_weights_is_refused_before_any_is_made() {
        // A 4096×4096 image into a 4096-unit layer: 2^36 weights.
        let json = r#"{"input":{"c":1,"h":4096,"w":4096},"layers":[{"type":"flatten"},{"type":"linear","out":4096}]}"#;
        let a: Arch = serde_json::from_str(json).unwrap();
        let e = a.params().unwrap_err();
        assert!(matches!(e, ArchError::TooManyParams(_)), "{e}");
        assert!(
            crate::net::init::init_params(&a, 0, crate::net::init::WeightInit::Uniform).is_err()
        );
    }

    #[test]
    fn misfits_are_named() {
        let mut a = Arch::original(10);
        a.layers.remove(6); // no flatten before the linear layer
        let e = a.shapes().unwrap_err().to_string();
        assert!(e.contains("layer 6") && e.contains("flatten"), "{e}");
        let mut a = Arch::original(10);
        a.layers.pop();
        assert_eq!(a.shapes().unwrap_err(), ArchError::NoLogits);
        let a = Arch {
            input: Shape {
                c: 1,
                h: 1 << 20,
                w: 1 << 20,
            },
            layers: vec![Layer::Flatten, Layer::Linear { out: 2 }],
        };
        assert!(matches!(a.shapes(), Err(ArchError::TooLarge(_))));
    }

    #[test]
    fn an_architecture_reads_from_json() {
        let json = r#"{"input":{"c":1,"h":28,"w":28},"layers":[
            {"type":"conv","out":32,"kernel":5,"pad":2},{"type":"relu"},
            {"type":"max_pool","window":2},{"type":"conv","out":64,"kernel":5,"pad":2},
            {"type":"relu"},{"type":"max_pool","window":2},{"type":"flatten"},
            {"type":"linear","out":1024},{"type":"relu"},{"type":"linear","out":10}]}"#;
        let a: Arch = serde_json::from_str(json).unwrap();
        assert_eq!(a, Arch::original(10));
    }
}
