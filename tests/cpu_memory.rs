//! The CPU contrastive path's extra memory, counted by the allocator: at n = m = 16,384,
//! dim = 256 (issue 9) it stays under 1% of what the materialised `n × m` logits, their
//! softmax and their gradient take (3 · n · m · 4 bytes = 3.22 GB), also where the path
//! converts rows (normalised, or stored in 16 bits) and writes 16-bit gradients.
//!
//! Its own test binary: the counting allocator sees the whole process, so nothing else may
//! run beside the measured calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use wgloss::families::contrastive::cpu::compute_into;
use wgloss::{
    bf16, f16, ContrastiveLoss, ContrastiveOperands, ContrastiveOutput, ContrastiveSpec, Element,
};

/// The system allocator, counting the bytes live now and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are kept beside.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Seeded values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The most bytes the call allocated beyond what was live before it, the outputs made
/// beforehand (as an engine reusing them between steps would).
fn extra_bytes<T: Element>(
    loss: &ContrastiveLoss,
    x1: &[T],
    x2: Option<&[T]>,
    dim: usize,
) -> usize {
    let spec = ContrastiveSpec::new(loss.clone());
    let ops = ContrastiveOperands {
        input1: x1,
        input2: x2,
        dim,
    };
    let mut out = ContrastiveOutput {
        loss: f32::NAN,
        grad_input1: vec![T::default(); x1.len()],
        grad_input2: vec![T::default(); x2.map_or(0, |x| x.len())],
        grad_scale: 0.0,
        grad_bias: 0.0,
    };
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    compute_into(&spec, &ops, &mut out).unwrap();
    assert!(out.loss.is_finite(), "{loss}: loss {}", out.loss);
    PEAK.load(Relaxed) - before
}

#[test]
fn contrastive_cpu_extra_memory_is_under_one_percent_of_the_matrix() {
    let (n, dim) = (16_384usize, 256usize);
    let materialised = 3 * n * n * 4;
    let a = values(n * dim, 1);
    let b = values(n * dim, 2);
    let info_nce = |normalize| ContrastiveLoss::InfoNce {
        scale: 1.0 / 0.07,
        symmetric: true,
        normalize,
    };
    let a16: Vec<bf16> = a.iter().map(|&x| bf16::from_f32(x)).collect();
    let b16: Vec<bf16> = b.iter().map(|&x| bf16::from_f32(x)).collect();
    let h: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
    let cases: [(String, usize); 4] = [
        (
            "info_nce, f32".into(),
            extra_bytes(&info_nce(false), &a, Some(&b), dim),
        ),
        (
            "info_nce normalize, f32".into(),
            extra_bytes(&info_nce(true), &a, Some(&b), dim),
        ),
        (
            "info_nce normalize, bf16".into(),
            extra_bytes(&info_nce(true), &a16, Some(&b16), dim),
        ),
        (
            "nt_xent normalize, f16".into(),
            extra_bytes(
                &ContrastiveLoss::NtXent {
                    temperature: 0.1,
                    normalize: true,
                },
                &h,
                None,
                dim,
            ),
        ),
    ];
    for (case, extra) in &cases {
        let share = *extra as f64 / materialised as f64;
        eprintln!(
            "{case}: {:.2} MB extra, {:.3}% of the materialised {:.2} GB",
            *extra as f64 / 1e6,
            100.0 * share,
            materialised as f64 / 1e9
        );
        assert!(
            extra * 100 < materialised,
            "{case}: {extra} bytes, {:.2}% of {materialised}",
            100.0 * share
        );
    }
}
