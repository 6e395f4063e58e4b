//! Every WGSL file parsed and validated by naga, without an adapter: each file in every
//! kernel it becomes part of (a file such as elementwise.wgsl is a template and only whole
//! once composed), for every pipeline key variant, plus the files that stand alone.

use wgloss::gpu::pipelines::{
    compose, sources, ElementwiseVariant, Kernel, PipelineKey, ReduceStrategy, RowLoss, RowVariant,
};
use wgloss::{AuxInput, CustomLoss, ElementwiseLoss, ElementwiseSpec};

fn validate(label: &str, src: &str, subgroups: bool) -> Result<(), String> {
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| format!("{label}: {}", e.emit_to_string(src)))?;
    let caps = if subgroups {
        naga::valid::Capabilities::SUBGROUP
    } else {
        naga::valid::Capabilities::empty()
    };
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .map(|_| ())
        .map_err(|e| format!("{label}: {}", e.emit_to_string(src)))
}

fn keys() -> Vec<(PipelineKey, Option<CustomLoss>)> {
    let custom = CustomLoss::new(
        "log1p_sq",
        "fn custom_value(x: f32, y: f32) -> f32 { let d = x - y; return log(1.0 + d * d); }\n\
         fn custom_grad(x: f32, y: f32) -> f32 { let d = x - y; return 2.0 * d / (1.0 + d * d); }",
        |_, _| (0.0, 0.0),
    );
    let mut losses: Vec<ElementwiseLoss> = wgloss::ELEMENTWISE_NAMES
        .iter()
        .map(|n| ElementwiseLoss::from_name(n).unwrap())
        .collect();
    losses.push(ElementwiseLoss::Custom(custom.clone()));
    let mut keys = Vec::new();
    for reduce in [ReduceStrategy::SharedTree, ReduceStrategy::Subgroup] {
        for kernel in [
            Kernel::ClassPrepass { weight: false },
            Kernel::ClassPrepass { weight: true },
            Kernel::FinalSum {
                divisor_from_status: true,
                zero_if_empty: true,
            },
        ] {
            keys.push((
                PipelineKey {
                    kernel,
                    workgroup_size: 256,
                    reduce,
                },
                None,
            ));
        }
        for loss in [
            RowLoss::CrossEntropy,
            RowLoss::Nll,
            RowLoss::KlDiv,
            RowLoss::Margin,
            RowLoss::MulticlassHinge,
            RowLoss::MultilabelSoftMargin,
            RowLoss::MultilabelMargin,
        ] {
            for (reduced, in_place, target_index) in [
                (true, false, true),
                (false, true, true),
                (true, false, false),
            ] {
                let variant = RowVariant {
                    loss,
                    reduced,
                    mean_by_status: reduced && target_index,
                    target_index,
                    target_list: loss == RowLoss::MultilabelMargin,
                    per_element: loss == RowLoss::KlDiv,
                    weight: true,
                    grad_output: !reduced,
                    write_grad: true,
                    extras: true,
                    in_place,
                };
                keys.push((
                    PipelineKey {
                        kernel: Kernel::Rows(variant),
                        workgroup_size: 64,
                        reduce,
                    },
                    None,
                ));
            }
        }
        for kernel in [Kernel::FINAL_SUM, Kernel::StreamAdd] {
            keys.push((
                PipelineKey {
                    kernel,
                    workgroup_size: 256,
                    reduce,
                },
                None,
            ));
        }
        for loss in &losses {
            for reduced in [false, true] {
                let spec = ElementwiseSpec::new(loss.clone());
                let variant = ElementwiseVariant {
                    loss: loss.kind(),
                    reduced,
                    target: spec.loss.takes_target(),
                    weight: loss.takes_weight(),
                    aux: loss.aux_input(),
                    grad_output: !reduced,
                    write_grad: true,
                    write_grad_aux: loss.has_grad_var(),
                };
                let c = matches!(loss, ElementwiseLoss::Custom(_)).then(|| custom.clone());
                keys.push((
                    PipelineKey {
                        kernel: Kernel::Elementwise(variant),
                        workgroup_size: 256,
                        reduce,
                    },
                    c,
                ));
            }
        }
    }
    keys
}

#[test]
fn every_kernel_every_variant_validates() {
    let mut failures = Vec::new();
    let all = keys();
    for (key, custom) in &all {
        let src = compose(key, custom.as_ref()).unwrap();
        if let Err(e) = validate(
            &format!("{key:?}"),
            &src,
            key.reduce == ReduceStrategy::Subgroup,
        ) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(all.len() > 100);
}

#[test]
fn every_wgsl_file_is_used_and_the_standalone_ones_validate() {
    // Each file in shaders/ is known to the crate (nothing there is dead or unchecked) ...
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = sources::ALL.iter().map(|(n, _)| n.to_string()).collect();
    known.sort();
    assert_eq!(on_disk, known);
    // ... and the library files stand alone.
    validate("reduce_tree.wgsl", sources::REDUCE_TREE, false).unwrap();
    validate("reduce_subgroup.wgsl", sources::REDUCE_SUBGROUP, true).unwrap();
    validate("launch.wgsl", sources::LAUNCH, false).unwrap();
    validate("math.wgsl", sources::MATH, false).unwrap();
    // The subgroup reduction needs the capability: it must not validate without it.
    assert!(validate("reduce_subgroup.wgsl", sources::REDUCE_SUBGROUP, false).is_err());
}

#[test]
fn an_invalid_custom_loss_is_a_validation_error() {
    let bad = CustomLoss::new(
        "bad",
        "fn custom_value(x: f32) -> f32 { return x; }",
        |x, _| (x, 1.0),
    );
    let variant = ElementwiseVariant {
        loss: ElementwiseLoss::Custom(bad.clone()).kind(),
        reduced: true,
        target: true,
        weight: false,
        aux: AuxInput::None,
        grad_output: false,
        write_grad: true,
        write_grad_aux: false,
    };
    let key = PipelineKey {
        kernel: Kernel::Elementwise(variant),
        workgroup_size: 256,
        reduce: ReduceStrategy::SharedTree,
    };
    assert!(validate("bad", &compose(&key, Some(&bad)).unwrap(), false).is_err());
}
