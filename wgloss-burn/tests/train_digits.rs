//! The Burn training example (examples/digits_mlp.rs) as a test: the same MLP, seed and
//! optimizer, once with wgloss's cross-entropy and once with Burn's own; both must reach 95%
//! held-out accuracy on the digits.

#[allow(dead_code)]
#[path = "../examples/digits_mlp.rs"]
mod digits_mlp;

use burn::tensor::Device;
use digits_mlp::{train, LossImpl};

#[test]
fn the_mlp_reaches_95_percent_with_wglosss_loss_and_with_burns() {
    let device = match wgloss_burn::init(Device::wgpu_options()) {
        Ok(d) => d.autodiff(),
        Err(e) if std::env::var("WGLOSS_ALLOW_NO_ADAPTER").as_deref() == Ok("1") => {
            eprintln!("SKIPPED (WGLOSS_ALLOW_NO_ADAPTER=1): no wgpu device: {e}");
            return;
        }
        Err(e) => panic!("no wgpu device for Burn ({e}); set WGLOSS_ALLOW_NO_ADAPTER=1 to skip"),
    };
    let ours = train(&device, LossImpl::Wgloss, 30, 7).unwrap();
    let burns = train(&device, LossImpl::Burn, 30, 7).unwrap();
    println!("wgloss: {ours:?}\nburn: {burns:?}");
    for (name, r) in [("wgloss", &ours), ("burn", &burns)] {
        assert!(
            r.losses.last() < r.losses.first(),
            "{name}: the loss did not fall: {:?}",
            r.losses
        );
        assert!(
            r.test_accuracy >= 0.95,
            "{name}: held-out accuracy {:.4}",
            r.test_accuracy
        );
    }
}
