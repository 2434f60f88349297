use std::time::Instant;
use backwork::backwork::cost::{GroupActs, group_cost};
use backwork::backwork::frozen::{Forward, FrozenCnn, TapGrads};
use backwork::backwork::refs::LabelRefs;
use backwork::backwork::Settings;
use backwork::data::{Dataset, Split};
use rand::{Rng, SeedableRng, rngs::StdRng};
fn main() {
    let cnn = backwork::model::weights::shipped_cnn().unwrap().0;
    let net = FrozenCnn::new(&cnn).unwrap();
    let train = Dataset::mnist(Split::Train).unwrap();
    let refs = LabelRefs::build(&net, &train, 0, &mut |_, _| {});
    let mut rng = StdRng::seed_from_u64(0);
    let x: Vec<f32> = (0..80 * 784).map(|_| rng.random::<f32>()).collect();
    let mut f = Forward::default();
    net.forward(&x, &mut f);
    let s = Settings::default();
    for _ in 0..3 {
        let t = Instant::now();
        net.forward(&x, &mut f);
        let tf = t.elapsed();
        let t = Instant::now();
        let mut gcs = Vec::new();
        for g in 0..10 {
            let r = |d: usize| g * 8 * d..(g + 1) * 8 * d;
            let acts = GroupActs { n: 8, taps: [&f.inputs[r(784)], &f.conv0[r(6272)], &f.conv1[r(3136)], &f.fc[r(1024)]], probs: &f.probs[g * 80..(g + 1) * 80], classes: 10 };
            gcs.push(group_cost(&acts, &refs, &s));
        }
        let tc = t.elapsed();
        let g = TapGrads { inputs: vec![0.1; 80 * 784], conv0: vec![0.1; 80 * 6272], conv1: vec![0.1; 80 * 3136], fc: vec![0.1; 80 * 1024], logits: vec![0.1; 800] };
        let t = Instant::now();
        let _gx = net.backward(&f, &g);
        let tb = t.elapsed();
        println!("forward {:?} cost(10 groups) {:?} backward {:?}", tf, tc, tb);
    }
}
