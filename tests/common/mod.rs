//! Helpers shared by the integration tests that run the binary on small data.

use std::path::Path;

use backwork::data::idx::{encode_images, encode_labels};
use backwork::data::{Dataset, PIXELS, Split};

/// The first `n` MNIST test images as both splits of an IDX folder `dir`.
pub fn small_data_dir(dir: &Path, n: usize) {
    let test = Dataset::mnist(Split::Test).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for split in ["train", "t10k"] {
        let images = encode_images(n, &test.pixels[..n * PIXELS]);
        std::fs::write(dir.join(format!("{split}-images-idx3-ubyte")), images).unwrap();
        let labels = encode_labels(&test.labels[..n]);
        std::fs::write(dir.join(format!("{split}-labels-idx1-ubyte")), labels).unwrap();
    }
}
