//! The network core: a sequential network described as data ([`Arch`]), its forward and
//! backward passes on our own kernels (im2col + `gemm`, NHWC, buffers reused across steps,
//! work split across cores), and the training pieces (cross-entropy, Adam). Training,
//! evaluation, reference sets, saliency and the backwork engine all run on it; candle stays
//! for reading and writing tensors and as the plain implementation the tests compare against.

pub mod arch;
pub mod direct;
pub mod init;
pub mod kernels;
pub mod linalg;
pub mod optim;
pub mod pass;
pub mod winograd;

pub use arch::{Arch, ArchError, Layer, Param, Shape, Tap, TapKind};
pub use optim::{Adam, Targets, cross_entropy};
pub use pass::{Acts, Grads, Net, NetError, Want};

/// The weight names of ALGORITHM.md §1, in file order: the names [`Arch::params`] gives the
/// original network.
pub const ORIGINAL_WEIGHT_NAMES: [&str; 8] = [
    "conv0.weight",
    "conv0.bias",
    "conv1.weight",
    "conv1.bias",
    "fc.weight",
    "fc.bias",
    "softmax.weight",
    "softmax.bias",
];
