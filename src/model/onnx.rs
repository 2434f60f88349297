//! ONNX files as `torch.onnx.export` writes them for a sequential CNN: Conv, Relu, MaxPool,
//! Flatten or Reshape, Gemm (or MatMul and Add), with Dropout and Identity passed through and
//! an optional final Softmax or LogSoftmax. The file is parsed by `onnx-ir` (which resolves
//! every opset's attributes into typed configurations and reads external data files next to
//! the model); this module maps its nodes onto an [`Arch`] and PyTorch-layout parameters.

use std::path::Path;

use onnx_ir::{ArgType, Argument, Node, OnnxGraphBuilder, TensorDataExt};

use super::weights::{WeightsError, sha256_hex};
use crate::meta::ModelInfo;
use crate::net::{Arch, Layer, Net, Shape};

pub use super::weights::META_SOURCE;

/// At most this large an ONNX file (its external data excluded): a bound on memory.
const MAX_BYTES: u64 = 2 << 30;

/// Whether `path` names an ONNX file (by its extension, any case).
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Loads the network of an ONNX file, checked; every error names the file, and an operator
/// backwork cannot run names the operator and its node.
pub fn load_onnx(path: &Path) -> Result<(Net, ModelInfo), WeightsError> {
    let file = path.display().to_string();
    let invalid = |reason: String| WeightsError::Invalid {
        file: file.clone(),
        reason,
    };
    let bytes =
        crate::io::read_regular_max(path, MAX_BYTES).map_err(|source| WeightsError::Io {
            file: file.clone(),
            source,
        })?;
    // onnx-ir reads the file again to find external data beside it. It is a parser of
    // untrusted input written elsewhere: a panic inside it becomes this file's one-line error
    // (the default hook, which would print it, is held back meanwhile).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let parsed = std::panic::catch_unwind(|| OnnxGraphBuilder::new().parse_file(path));
    std::panic::set_hook(hook);
    let graph = match parsed {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return Err(invalid(format!("not a readable ONNX model: {e}"))),
        Err(_) => {
            return Err(invalid(
                "not a readable ONNX model (the parser failed)".into(),
            ));
        }
    };
    let (arch, torch) =
        to_arch(&graph).map_err(|e| invalid(with_file_names(&e, &graph, &bytes)))?;
    let net = Net::from_torch(arch, torch).map_err(|e| invalid(e.to_string()))?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert(META_SOURCE.to_string(), "onnx".to_string());
    let info = ModelInfo {
        name: path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.clone()),
        sha256: sha256_hex(&bytes),
        metadata,
        architecture: net.arch().summary(),
    };
    Ok((net, info))
}

/// `message` with each node the parser named (`sigmoid1`: its first Sigmoid) called by its
/// name in the file (`/1/Sigmoid`), found as the same occurrence of its operator there.
fn with_file_names(message: &str, graph: &onnx_ir::OnnxGraph, bytes: &[u8]) -> String {
    use onnx_ir::Message;
    let Ok(model) = onnx_ir::ModelProto::parse_from_bytes(bytes) else {
        return message.to_string();
    };
    let file_nodes = &model.graph.node;
    let mut out = message.to_string();
    for node in &graph.nodes {
        let ir = node.name();
        let op = op_name(node);
        // The parser's names are the operator, lower case, and its occurrence from 1.
        let Some(nth) = ir
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
        else {
            continue;
        };
        let base = op.trim_end_matches("2d").trim_end_matches("1d");
        let found = [op.as_str(), base].iter().find_map(|want| {
            file_nodes
                .iter()
                .filter(|n| n.op_type == *want)
                .nth(nth - 1)
                .filter(|n| !n.name.is_empty())
        });
        let Some(found) = found else { continue };
        let needle = format!("node {ir}");
        let mut rebuilt = String::new();
        let mut rest = out.as_str();
        while let Some(i) = rest.find(&needle) {
            let after = &rest[i + needle.len()..];
            rebuilt.push_str(&rest[..i]);
            if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                rebuilt.push_str(&needle);
            } else {
                rebuilt.push_str(&format!("node {}", found.name));
            }
            rest = after;
        }
        rebuilt.push_str(rest);
        out = rebuilt;
    }
    out
}

/// The operator's name as ONNX spells it, for messages.
fn op_name(node: &Node) -> String {
    match node {
        Node::Custom(c) => c.op_type.clone(),
        other => format!("{:?}", other.node_type()),
    }
}

/// A constant input's values as f32 with its shape, or why not.
fn constant(node: &Node, arg: &Argument, what: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
    let data = arg.value().ok_or_else(|| {
        format!(
            "node {} ({}): its {what} is not a constant in the file",
            node.name(),
            op_name(node)
        )
    })?;
    let shape = data.shape().to_vec();
    let values = data
        .to_f32_vec()
        .map_err(|e| format!("node {}: its {what} cannot be read: {e:?}", node.name()))?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!(
            "node {}: its {what} has a non-finite value (NaN or infinity) at flat index {i}",
            node.name()
        ));
    }
    Ok((shape, values))
}

/// A layer's weight: its second input.
fn weight_arg(node: &Node) -> Result<&Argument, String> {
    node.inputs()
        .get(1)
        .ok_or_else(|| format!("node {} ({}) has no weight", node.name(), op_name(node)))
}

/// The bias of a convolution or linear layer with `out` outputs: its third input, or zeros.
fn bias(node: &Node, out: usize) -> Result<Vec<f32>, String> {
    match node.inputs().get(2).filter(|a| !a.is_optional()) {
        None => Ok(vec![0.0; out]),
        Some(arg) => {
            let (shape, b) = constant(node, arg, "bias")?;
            if b.len() != out {
                return Err(format!(
                    "node {}: bias of shape {shape:?} for {out} outputs",
                    node.name()
                ));
            }
            Ok(b)
        }
    }
}

/// A 2-D weight `[rows, cols]` transposed.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// A linear layer's weight (`[out, in]` when `out_major`, else `[in, out]`) and bias pushed
/// onto `params` in PyTorch's layout, checked against its input `shape`; its output count.
fn linear(
    node: &Node,
    out_major: bool,
    shape: Shape,
    params: &mut Vec<Vec<f32>>,
) -> Result<usize, String> {
    let (wshape, w) = constant(node, weight_arg(node)?, "weight")?;
    let [a, b] = wshape[..] else {
        return Err(format!(
            "node {} ({}): weight of shape {wshape:?}",
            node.name(),
            op_name(node)
        ));
    };
    let (out, inp, w) = if out_major {
        (a, b, w)
    } else {
        (b, a, transpose(&w, a, b))
    };
    if inp != shape.len() {
        return Err(format!(
            "node {} ({}): {inp} inputs where the layer before gives {}",
            node.name(),
            op_name(node),
            shape.len()
        ));
    }
    params.push(w);
    params.push(bias(node, out)?);
    Ok(out)
}

/// The one input shape (C, H, W) of the graph's image input.
fn input_shape(graph: &onnx_ir::OnnxGraph) -> Result<(String, Shape), String> {
    let dynamic: Vec<&Argument> = graph
        .inputs
        .iter()
        .filter(|a| a.value().is_none())
        .collect();
    let [input] = dynamic.as_slice() else {
        return Err(format!(
            "the network has {} inputs; backwork takes networks of one image input",
            dynamic.len()
        ));
    };
    let dims = match &input.ty {
        ArgType::Tensor(t) => t.static_shape.clone(),
        _ => None,
    };
    match dims.as_deref() {
        Some([_, Some(c), Some(h), Some(w)]) if *c > 0 && *h > 0 && *w > 0 => Ok((
            input.name.clone(),
            Shape {
                c: *c,
                h: *h,
                w: *w,
            },
        )),
        _ => Err(format!(
            "input {} has shape {:?}; backwork takes images (batch, channels, height, width) of fixed size",
            input.name, dims
        )),
    }
}

/// The architecture and PyTorch-layout parameters of a sequential graph.
fn to_arch(graph: &onnx_ir::OnnxGraph) -> Result<(Arch, Vec<Vec<f32>>), String> {
    let (mut current, input) = input_shape(graph)?;
    let mut arch = Arch {
        input,
        layers: Vec::new(),
    };
    let mut params: Vec<Vec<f32>> = Vec::new();
    // The shape flowing through the chain, and whether a softmax has ended it.
    let mut shape = input;
    let mut ended = false;
    // Outputs of shape arithmetic (see below).
    let mut shape_values: std::collections::HashSet<String> = Default::default();
    for (index, node) in graph.nodes.iter().enumerate() {
        let unsupported = || {
            format!(
                "unsupported operator {} (node {}, the {} of {}); backwork takes Conv, Relu, MaxPool, Flatten, Reshape, Gemm, MatMul+Add, Dropout, Identity and a final Softmax or LogSoftmax",
                op_name(node),
                node.name(),
                ordinal(index + 1),
                graph.nodes.len()
            )
        };
        // Shape arithmetic (what `x.view(x.size(0), -1)` exports to: Shape, Gather,
        // Unsqueeze, Concat) computes a reshape's target, not a layer: set aside, its outputs
        // allowed only as a Reshape's shape.
        let shape_op = matches!(
            node,
            Node::Shape(_)
                | Node::Gather(_)
                | Node::Unsqueeze(_)
                | Node::Squeeze(_)
                | Node::Concat(_)
                | Node::Constant(_)
                | Node::Cast(_)
                | Node::Slice(_)
        );
        let data_in = node
            .inputs()
            .iter()
            .filter(|a| !a.is_optional() && a.value().is_none());
        if shape_op
            && data_in
                .clone()
                .all(|a| a.name == current || shape_values.contains(&a.name))
        {
            shape_values.extend(node.outputs().iter().map(|a| a.name.clone()));
            continue;
        }
        let supported = matches!(
            node,
            Node::Conv2d(_)
                | Node::Relu(_)
                | Node::MaxPool2d(_)
                | Node::Flatten(_)
                | Node::Reshape(_)
                | Node::Linear(_)
                | Node::Gemm(_)
                | Node::Dropout(_)
                | Node::Identity(_)
                | Node::Softmax(_)
                | Node::LogSoftmax(_)
        );
        if !supported {
            // `(x - mean) / std` exported with the network, before any layer.
            let arithmetic = matches!(op_name(node).as_str(), "Sub" | "Div" | "Mul" | "Add");
            if arithmetic && arch.layers.is_empty() {
                return Err(format!(
                    "{}; if it normalises the input, export the network without it and give \
                     the normalisation as --input-mean/--input-std (the Model view's mean and \
                     std)",
                    unsupported()
                ));
            }
            return Err(unsupported());
        }
        // The node must read what the one before it wrote: the network is a chain (a
        // Reshape may also read a computed shape).
        let mut reads: Vec<&Argument> = data_in.collect();
        if matches!(node, Node::Reshape(_)) {
            reads.retain(|a| !shape_values.contains(&a.name));
        }
        if reads.len() != 1 || reads[0].name != current {
            return Err(format!(
                "node {} ({}) does not read the output of the node before it; backwork takes sequential networks",
                node.name(),
                op_name(node)
            ));
        }
        if ended {
            return Err(format!(
                "node {} ({}) comes after the softmax; the softmax must be the last node",
                node.name(),
                op_name(node)
            ));
        }
        let misfit = |why: String| format!("node {} ({}): {why}", node.name(), op_name(node));
        let mut layer = None;
        match node {
            Node::Conv2d(conv) => {
                let c = &conv.config;
                let k = c.kernel_size[0];
                if c.kernel_size[1] != k {
                    return Err(misfit(format!(
                        "kernel {}×{}: backwork takes square kernels",
                        c.kernel_size[0], c.kernel_size[1]
                    )));
                }
                if c.stride[0] != c.stride[1] {
                    return Err(misfit(format!("strides {:?} differ", c.stride)));
                }
                if c.dilation != [1, 1] || c.groups != 1 {
                    return Err(misfit(format!(
                        "dilation {:?} and groups {}: backwork takes dilation 1 and 1 group",
                        c.dilation, c.groups
                    )));
                }
                let pad = match &c.padding {
                    onnx_ir::node::padding::PaddingConfig2d::Valid => 0,
                    onnx_ir::node::padding::PaddingConfig2d::Explicit(t, l, b, r)
                        if t == l && l == b && b == r =>
                    {
                        *t
                    }
                    other => {
                        return Err(misfit(format!(
                            "padding {other}: backwork takes the same padding on every side"
                        )));
                    }
                };
                let (wshape, w) = constant(node, weight_arg(node)?, "weight")?;
                let out = wshape.first().copied().unwrap_or(0);
                let want = [out, shape.c, k, k];
                if wshape != want {
                    return Err(misfit(format!(
                        "weight of shape {wshape:?} where its input {shape} needs {want:?}"
                    )));
                }
                params.push(w);
                params.push(bias(node, out)?);
                layer = Some(Layer::Conv {
                    out,
                    kernel: k,
                    stride: c.stride[0],
                    pad,
                });
            }
            Node::Relu(_) => layer = Some(Layer::Relu),
            Node::MaxPool2d(pool) => {
                let c = &pool.config;
                let win = c.kernel_size[0];
                if c.kernel_size[1] != win || c.strides[0] != c.strides[1] {
                    return Err(misfit(format!(
                        "window {:?} and strides {:?}: backwork takes square windows",
                        c.kernel_size, c.strides
                    )));
                }
                if c.dilation != [1, 1]
                    || c.ceil_mode
                    || !matches!(c.padding, onnx_ir::node::padding::PaddingConfig2d::Valid)
                {
                    return Err(misfit(format!(
                        "padding {}, dilation {:?}, ceil mode {}: backwork takes unpadded pools in floor mode",
                        c.padding, c.dilation, c.ceil_mode
                    )));
                }
                layer = Some(Layer::MaxPool {
                    window: win,
                    stride: Some(c.strides[0]),
                });
            }
            Node::Flatten(f) => {
                if f.config.axis != 1 {
                    return Err(misfit(format!(
                        "axis {}: backwork flattens from axis 1",
                        f.config.axis
                    )));
                }
                layer = Some(Layer::Flatten);
            }
            Node::Reshape(r) => {
                let rank = match node.outputs().first().map(|a| &a.ty) {
                    Some(ArgType::Tensor(t)) => t.rank,
                    _ => 0,
                };
                // A computed shape of rank 2 (batch, features): the flatten PyTorch writes as
                // `x.view(x.size(0), -1)`; the linear layer after it checks the features.
                let target = match &r.config.shape {
                    onnx_ir::node::reshape::ReshapeInput::Static(s) => s.clone(),
                    _ if rank == 2 => vec![-1, shape.len() as i64],
                    _ => {
                        return Err(misfit(format!(
                            "a shape computed at run time, of rank {rank}: backwork takes a reshape to (batch, features) only"
                        )));
                    }
                };
                let n = shape.len() as i64;
                let flat =
                    target.len() == 2 && (target[1] == n || (target[1] == -1 && target[0] != 0));
                if !flat {
                    return Err(misfit(format!(
                        "reshape to {target:?}: backwork takes a reshape to (batch, {n}) only"
                    )));
                }
                layer = Some(Layer::Flatten);
            }
            Node::Linear(lin) => {
                // ONNX Gemm keeps [out, in] (transB = 1); MatMul keeps [in, out].
                let out = linear(node, lin.config.transpose_weight, shape, &mut params)?;
                layer = Some(Layer::Linear { out });
            }
            Node::Gemm(gemm) => {
                let c = &gemm.config;
                if c.alpha != 1.0 || c.beta != 1.0 || c.trans_a != 0 {
                    return Err(misfit(format!(
                        "alpha {}, beta {}, transA {}: backwork takes alpha 1, beta 1, transA 0",
                        c.alpha, c.beta, c.trans_a
                    )));
                }
                let out = linear(node, c.trans_b != 0, shape, &mut params)?;
                layer = Some(Layer::Linear { out });
            }
            Node::Dropout(_) | Node::Identity(_) => {}
            Node::Softmax(sm) => {
                softmax_axis(node, sm.config.axis)?;
                ended = true;
            }
            Node::LogSoftmax(sm) => {
                softmax_axis(node, sm.config.axis)?;
                ended = true;
            }
            _ => return Err(unsupported()),
        }
        if let Some(layer) = layer {
            if matches!(layer, Layer::Linear { .. }) && (shape.h != 1 || shape.w != 1) {
                arch.layers.push(Layer::Flatten);
            }
            arch.layers.push(layer);
            let shapes = arch.layer_shapes().map_err(|e| misfit(e.to_string()))?;
            shape = shapes.last().copied().unwrap_or(shape);
        }
        current = node
            .outputs()
            .first()
            .map(|a| a.name.clone())
            .unwrap_or_default();
    }
    if !graph.outputs.iter().any(|o| o.name == current) {
        return Err(format!(
            "the graph's output is not the end of its chain of nodes ({current}); backwork takes sequential networks"
        ));
    }
    if !matches!(arch.layers.last(), Some(Layer::Linear { .. })) {
        return Err(
            "the network must end with a linear layer (Gemm or MatMul), optionally followed by a softmax"
                .into(),
        );
    }
    arch.params().map_err(|e| e.to_string())?;
    Ok((arch, params))
}

/// A final softmax must run over the classes (axis 1 of (batch, classes)); over the batch
/// it is another function, refused.
fn softmax_axis(node: &Node, axis: usize) -> Result<(), String> {
    if axis == 1 {
        Ok(())
    } else {
        Err(format!(
            "node {} ({}): over axis {axis}; backwork takes a softmax over the classes (axis 1)",
            node.name(),
            op_name(node)
        ))
    }
}

/// "1st", "2nd", "3rd", "4th", …
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}
