use gemm::Parallelism;
use std::time::Instant;
fn run(par: Parallelism, a: &[f32], b: &[f32], out: &mut [f32], m: usize, k: usize, n: usize) {
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
fn main() {
    let (m, k, n) = (8, 6272, 6000);
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32).collect();
    let b: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32).collect();
    let mut out = vec![0.0f32; m * n];
    for (name, par) in [
        ("none", Parallelism::None),
        ("rayon0", Parallelism::Rayon(0)),
        ("rayon2", Parallelism::Rayon(2)),
    ] {
        run(par, &a, &b, &mut out, m, k, n);
        let t = Instant::now();
        for _ in 0..10 {
            run(par, &a, &b, &mut out, m, k, n);
        }
        println!(
            "{name}: {:?} per product ({:.1} GB/s of B)",
            t.elapsed() / 10,
            (n * k * 4) as f64 / (t.elapsed().as_secs_f64() / 10.0) / 1e9
        );
    }
    // Transposed layout: B as k×n row-major (refs stored transposed).
    let bt: Vec<f32> = (0..n * k).map(|i| (i % 5) as f32).collect();
    for (name, par) in [
        ("T none", Parallelism::None),
        ("T rayon0", Parallelism::Rayon(0)),
    ] {
        let t = Instant::now();
        for _ in 0..10 {
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    bt.as_ptr(),
                    1,
                    n as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                );
            }
        }
        println!("{name}: {:?}", t.elapsed() / 10);
    }
}
