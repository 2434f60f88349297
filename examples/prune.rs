use backwork::backwork::Settings;
use backwork::backwork::engine::Engine;
use backwork::backwork::frozen::FrozenCnn;
use backwork::backwork::refs::LabelRefs;
use backwork::data::{Dataset, Split};
use std::sync::Arc;
fn main() {
    let cnn = backwork::model::weights::shipped_cnn().unwrap().0;
    let net = FrozenCnn::new(&cnn).unwrap();
    let train = Dataset::mnist(Split::Train).unwrap();
    let refs = vec![Arc::new(LabelRefs::build(&net, &train, 3, &mut |_, _| {}))];
    let mut e = Engine::new(
        net,
        &refs,
        Settings {
            labels: vec![3],
            max_steps: Some(400),
            ..Settings::default()
        },
    )
    .unwrap();
    let mut last = (0, 0);
    loop {
        let ev = e.step().unwrap();
        if ev.step % 25 == 0 {
            let (r, f) = e.search_rows();
            println!(
                "step {:4}: rows read {:.3} of a full search (last 25 steps)",
                ev.step,
                (r - last.0) as f64 / (f - last.1) as f64
            );
            last = (r, f);
        }
        if ev.end.is_some() {
            break;
        }
    }
}
