//! The network core: a sequential network described as data ([`Arch`]), its forward and
//! backward passes on our own kernels (im2col + `gemm`, NHWC, buffers reused across steps,
//! work split across cores), and the training pieces (cross-entropy, Adam). Training,
//! evaluation, reference sets, saliency and the backwork engine all run on it; candle stays
//! for reading and writing tensors and as the plain implementation the tests compare against.

/// Defines `$name`, which runs the copy of `$body` (an `#[inline(always)]` function) compiled
/// for the best instruction set the CPU has: AVX-512, AVX2 with FMA, or the baseline (the
/// default x86-64 target has only SSE2; the matrix kernels choose at run time the same way). Defined
/// here, before the modules, so every kernel module can use it.
macro_rules! best_simd {
    ($(#[$doc:meta])* $vis:vis fn $name:ident, $avx512:ident, $avx2:ident => $body:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature the copy is compiled for.
                    return unsafe { $avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: as above.
                    return unsafe { $avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        fn $avx512($($arg: $ty),*) {
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $avx2($($arg: $ty),*) {
            $body($($arg),*)
        }
    };
}

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
pub use pass::{Acts, Grads, InputNorm, Net, NetError, Want};

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
