//! Embeds the shipped model when assets/models/mnist-cnn.safetensors exists, so a fresh build
//! can train the model that a later build ships.

fn main() {
    let model = "assets/models/mnist-cnn.safetensors";
    println!("cargo::rustc-check-cfg=cfg(shipped_model)");
    println!("cargo::rerun-if-changed={model}");
    println!("cargo::rerun-if-changed=assets/models");
    if std::path::Path::new(model).is_file() {
        println!("cargo::rustc-cfg=shipped_model");
    }
}
