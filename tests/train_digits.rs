//! The training example (examples/train_digits.rs) as a test: an MLP trained on the GPU with
//! wgloss's cross-entropy in the same command encoder must reach 95% held-out accuracy on the
//! digits, well under a minute on lavapipe.

mod common;

#[allow(dead_code)]
#[path = "../examples/train_digits.rs"]
mod train_digits;

#[test]
fn the_mlp_reaches_95_percent_on_held_out_digits() {
    let Some(ctx) = common::gpu() else { return };
    let report = train_digits::train(&ctx, 60, 20).unwrap();
    // The loss was read back every 20 epochs, and fell.
    assert_eq!(report.losses.len(), 3);
    assert!(
        report.losses[2].1 < report.losses[0].1,
        "{:?}",
        report.losses
    );
    assert!(
        report.test_accuracy >= 0.95,
        "held-out accuracy {:.4}",
        report.test_accuracy
    );
    assert!(report.seconds < 60.0, "took {:.1} s", report.seconds);
}
