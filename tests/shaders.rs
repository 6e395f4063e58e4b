//! Every kernel, without an adapter: each composed variant of every family (the registry's
//! `Family::kernels`, and the shared kernels), for every storage type and both reductions, is
//! parsed and validated by naga; its reflection is compared with what the kernel declares in
//! Rust (binding numbers, names, access and element types; the uniform block's members,
//! offsets, types and size); and it is translated to SPIR-V, MSL, HLSL and GLSL, so that a
//! Metal or DX12 user is not the first to compile it.

use naga::valid::{Capabilities, ModuleInfo, ShaderStages, SubgroupOperationSet, ValidationFlags};
use wgloss::families::{KernelKey, FAMILIES};
use wgloss::gpu::common::CommonKernel;
use wgloss::gpu::kernel::{present_bindings, Access, Elem, KernelSource};
use wgloss::gpu::pipelines::{compose, layout_entries, PipelineKey, ReduceStrategy};
use wgloss::{CustomLoss, ElementwiseLoss, Storage};

/// Every kernel key to check: the families' variants and the shared kernels.
fn kernels() -> Vec<KernelKey> {
    let mut keys: Vec<KernelKey> = FAMILIES.iter().flat_map(|f| f.kernels()).collect();
    keys.extend([
        KernelKey::Common(CommonKernel::FinalSum {
            divisor_from_status: false,
            zero_if_empty: false,
        }),
        KernelKey::Common(CommonKernel::FinalSum {
            divisor_from_status: true,
            zero_if_empty: true,
        }),
        KernelKey::Common(CommonKernel::StreamAdd),
    ]);
    keys
}

/// Every pipeline key of `kernel` a device can build: each storage type, each reduction (a
/// row kernel whose team is a subgroup's lanes needs subgroups).
fn pipeline_keys(kernel: KernelKey) -> Vec<PipelineKey> {
    let mut keys = Vec::new();
    for storage in Storage::ALL {
        for reduce in [ReduceStrategy::Subgroup, ReduceStrategy::SharedTree] {
            if let KernelKey::Class(wgloss::families::class::gpu::ClassKernel::Rows(v)) = kernel {
                if reduce == ReduceStrategy::SharedTree && !v.team_is_workgroup {
                    continue;
                }
            }
            keys.push(PipelineKey {
                kernel,
                storage,
                workgroup_size: 256,
                reduce,
                team_lanes: if reduce == ReduceStrategy::Subgroup {
                    32
                } else {
                    1
                },
                inputs_writable: false,
            });
        }
    }
    // Inputs declared writable (buffers shared with outputs, an engine's memory pool): the
    // same kernels with every storage binding read_write, in one storage type.
    if let Some(first) = keys.first().copied() {
        keys.push(PipelineKey {
            inputs_writable: true,
            ..first
        });
    }
    keys
}

fn validate(
    label: &str,
    src: &str,
    key: &PipelineKey,
) -> Result<(naga::Module, ModuleInfo), String> {
    let module = naga::front::wgsl::parse_str(src)
        .map_err(|e| format!("{label}: {}", e.emit_to_string(src)))?;
    let mut caps = Capabilities::empty();
    if key.reduce == ReduceStrategy::Subgroup {
        caps |= Capabilities::SUBGROUP;
    }
    if key.storage == Storage::F16 {
        caps |= Capabilities::SHADER_FLOAT16;
    }
    let info = naga::valid::Validator::new(ValidationFlags::all(), caps)
        .subgroup_stages(ShaderStages::COMPUTE)
        .subgroup_operations(SubgroupOperationSet::all())
        .validate(&module)
        .map_err(|e| format!("{label}: {}", e.emit_to_string(src)))?;
    Ok((module, info))
}

/// The module's group-0 resources against the kernel's declaration in Rust.
fn reflect(label: &str, module: &naga::Module, key: &PipelineKey) -> Result<(), String> {
    let kernel = &key.kernel;
    let err = |m: String| Err(format!("{label}: {m}"));
    let uniform = kernel.uniform();
    let decls = kernel.bindings();
    let present: Vec<_> = present_bindings(&decls).collect();
    let mut seen = 0;
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = &var.binding else {
            continue;
        };
        seen += 1;
        if binding.group != 0 {
            return err(format!("{:?} is in group {}", var.name, binding.group));
        }
        let ty = &module.types[var.ty];
        if binding.binding == 0 {
            if var.space != naga::AddressSpace::Uniform || var.name.as_deref() != Some("params") {
                return err(format!(
                    "binding 0 is {:?} {:?}, not the uniform params",
                    var.space, var.name
                ));
            }
            let naga::TypeInner::Struct { members, span } = &ty.inner else {
                return err("the uniform is not a struct".into());
            };
            if ty.name.as_deref() != Some(uniform.wgsl_name) {
                return err(format!(
                    "uniform struct {:?}, Rust says {}",
                    ty.name, uniform.wgsl_name
                ));
            }
            if *span != uniform.size {
                return err(format!(
                    "uniform {} is {span} bytes in WGSL, {} in Rust",
                    uniform.wgsl_name, uniform.size
                ));
            }
            if members.len() != uniform.fields.len() {
                return err(format!(
                    "uniform {} has {} members in WGSL, {} in Rust",
                    uniform.wgsl_name,
                    members.len(),
                    uniform.fields.len()
                ));
            }
            for (m, f) in members.iter().zip(uniform.fields) {
                let ty_name = match &module.types[m.ty].inner {
                    naga::TypeInner::Scalar(s) => scalar_name(s).to_string(),
                    naga::TypeInner::Vector { size, scalar } => {
                        format!("vec{}<{}>", *size as u8, scalar_name(scalar))
                    }
                    other => format!("{other:?}"),
                };
                if m.name.as_deref() != Some(f.name) || m.offset != f.offset || ty_name != f.ty {
                    return err(format!(
                        "uniform member {:?} at {} ({ty_name}), Rust says {} at {} ({})",
                        m.name, m.offset, f.name, f.offset, f.ty
                    ));
                }
            }
            continue;
        }
        let Some((_, decl)) = present.iter().find(|(n, _)| *n == binding.binding) else {
            return err(format!(
                "{:?} at binding {} is not declared in Rust",
                var.name, binding.binding
            ));
        };
        if var.name.as_deref() != Some(decl.name) {
            return err(format!(
                "binding {} is {:?} in WGSL, {} in Rust",
                binding.binding, var.name, decl.name
            ));
        }
        let writable = match var.space {
            naga::AddressSpace::Storage { access } => access.contains(naga::StorageAccess::STORE),
            other => return err(format!("{} is in {other:?}", decl.name)),
        };
        if writable != (decl.access == Access::ReadWrite || key.inputs_writable) {
            return err(format!(
                "{}: writable {writable} in WGSL, {:?} in Rust",
                decl.name, decl.access
            ));
        }
        let naga::TypeInner::Array { base, .. } = &ty.inner else {
            return err(format!("{} is not an array", decl.name));
        };
        let elem = match &module.types[*base].inner {
            naga::TypeInner::Scalar(s) => scalar_name(s).to_string(),
            naga::TypeInner::Vector { size, scalar } => {
                format!("vec{}<{}>", *size as u8, scalar_name(scalar))
            }
            other => return err(format!("{}: element {other:?}", decl.name)),
        };
        let want = match decl.elem {
            Elem::Stored => key
                .storage
                .wgsl_word(decl.in_words_of_four(kernel.words_of_four())),
            Elem::F32 => "f32",
            Elem::I32 => "i32",
            Elem::U32 => "u32",
        };
        if elem != want {
            return err(format!(
                "{}: array<{elem}> in WGSL, array<{want}> in Rust",
                decl.name
            ));
        }
    }
    if seen != present.len() + 1 {
        return err(format!(
            "{seen} bound resources in WGSL, {} declared in Rust",
            present.len() + 1
        ));
    }
    // The bind group layout wgloss builds says the same.
    let entries = layout_entries(kernel, key.inputs_writable);
    if entries.len() != present.len() + 1 {
        return err("the bind group layout does not match the declaration".into());
    }
    Ok(())
}

fn scalar_name(s: &naga::Scalar) -> &'static str {
    match (s.kind, s.width) {
        (naga::ScalarKind::Float, 4) => "f32",
        (naga::ScalarKind::Float, 2) => "f16",
        (naga::ScalarKind::Uint, 4) => "u32",
        (naga::ScalarKind::Sint, 4) => "i32",
        (naga::ScalarKind::Bool, _) => "bool",
        _ => "other",
    }
}

/// Translates the module (overrides applied, as a pipeline would) to every backend.
fn translate(
    label: &str,
    module: &naga::Module,
    info: &ModuleInfo,
    key: &PipelineKey,
) -> Result<(), String> {
    let mut constants = naga::back::PipelineConstants::default();
    for (name, value) in key.constants() {
        constants.insert(name.to_string(), value);
    }
    let entry = key.entry_point();
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((naga::ShaderStage::Compute, entry)),
        &constants,
    )
    .map_err(|e| format!("{label}: overrides: {e}"))?;
    let (module, info) = (module.as_ref(), info.as_ref());

    let spv_options = naga::back::spv::Options {
        lang_version: (1, 3),
        ..Default::default()
    };
    let pipeline = naga::back::spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    naga::back::spv::write_vec(module, info, &spv_options, Some(&pipeline))
        .map_err(|e| format!("{label}: SPIR-V: {e}"))?;

    let msl_options = naga::back::msl::Options {
        lang_version: (2, 4),
        ..Default::default()
    };
    let msl_pipeline = naga::back::msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
        ..Default::default()
    };
    naga::back::msl::write_string(module, info, &msl_options, &msl_pipeline)
        .map_err(|e| format!("{label}: MSL: {e}"))?;

    let hlsl_options = naga::back::hlsl::Options {
        shader_model: naga::back::hlsl::ShaderModel::V6_2,
        fake_missing_bindings: true,
        ..Default::default()
    };
    let hlsl_pipeline = naga::back::hlsl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, entry.to_string())),
    };
    let mut hlsl = String::new();
    naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
        .write(module, info, None)
        .map_err(|e| format!("{label}: HLSL: {e}"))?;

    // wgpu's GL backend has neither subgroups nor f16: what GL runs is the rest.
    if key.reduce == ReduceStrategy::SharedTree && key.storage != Storage::F16 {
        let glsl_options = naga::back::glsl::Options {
            version: naga::back::glsl::Version::Desktop(430),
            ..Default::default()
        };
        let glsl_pipeline = naga::back::glsl::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: entry.to_string(),
            multiview: None,
        };
        let mut glsl = String::new();
        naga::back::glsl::Writer::new(
            &mut glsl,
            module,
            info,
            &glsl_options,
            &glsl_pipeline,
            naga::proc::BoundsCheckPolicies::default(),
        )
        .and_then(|mut w| w.write())
        .map_err(|e| format!("{label}: GLSL: {e}"))?;
    }
    Ok(())
}

/// Composes, validates, reflects and translates every key; returns the failures.
fn check_all(keys: &[(PipelineKey, Option<&str>)]) -> Vec<String> {
    let mut failures = Vec::new();
    for (key, extra) in keys {
        let label = format!("{:?} ({}, {:?})", key.kernel, key.storage, key.reduce);
        let src = compose(key, *extra);
        let result = validate(&label, &src, key).and_then(|(module, info)| {
            reflect(&label, &module, key)?;
            translate(&label, &module, &info, key)
        });
        failures.extend(result.err());
    }
    failures
}

#[test]
fn every_kernel_variant_validates_matches_its_declaration_and_translates_to_every_backend() {
    let keys: Vec<(PipelineKey, Option<&str>)> = kernels()
        .into_iter()
        .flat_map(pipeline_keys)
        .map(|k| (k, None))
        .collect();
    // Every family contributes, and the variants are many (a family without any would make
    // this test hollow).
    assert!(keys.len() > 500, "only {} pipeline keys", keys.len());
    let failures = check_all(&keys);
    assert!(
        failures.is_empty(),
        "{} of {} kernels fail:\n{}",
        failures.len(),
        keys.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_custom_loss_composes_for_every_backend() {
    let custom = CustomLoss::new(
        "log1p_sq",
        "fn custom_value(x: f32, y: f32) -> f32 { let d = x - y; return ln_1p_f(d * d); }\n\
         fn custom_grad(x: f32, y: f32) -> f32 { let d = x - y; return 2.0 * d / (1.0 + d * d); }",
        |_, _| (0.0, 0.0),
    );
    let spec = wgloss::ElementwiseSpec::new(ElementwiseLoss::Custom(custom.clone()));
    let layout = wgloss::ElementwiseLayout::new(16);
    let kernel = KernelKey::Elementwise(wgloss::families::elementwise::gpu::kernel(&spec, &layout));
    let keys: Vec<(PipelineKey, Option<&str>)> = pipeline_keys(kernel)
        .into_iter()
        .map(|k| (k, Some(custom.wgsl())))
        .collect();
    let failures = check_all(&keys);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_checks_catch_a_layout_mismatch() {
    // A uniform member whose Rust offset differs from the WGSL struct's: the reflection
    // fails (the test above would not pass over such a mismatch).
    let key = pipeline_keys(KernelKey::Common(CommonKernel::StreamAdd))[0];
    let src = compose(&key, None).replace(
        "struct StreamParams {\n    n: u32,\n    _pad0: u32,",
        "struct StreamParams {\n    _pad0: u32,\n    n: u32,",
    );
    assert!(src.contains("_pad0: u32,\n    n: u32"), "the edit applies");
    let (module, _) = validate("edited", &src, &key).unwrap();
    let e = reflect("edited", &module, &key).unwrap_err();
    assert!(e.contains("uniform member"), "{e}");
    // A binding of the wrong element type.
    let src = compose(&key, None).replace(
        "var<storage, read> a: array<vec4<f32>>",
        "var<storage, read> a: array<vec4<u32>>",
    );
    let src = src
        .replace("return a[w];", "return bitcast<vec4<f32>>(a[w]);")
        .replace(
            "return a[i / 4u][i % 4u];",
            "return bitcast<f32>(a[i / 4u][i % 4u]);",
        );
    let (module, _) = validate("edited", &src, &key).unwrap();
    let e = reflect("edited", &module, &key).unwrap_err();
    assert!(e.contains("array<vec4<u32>> in WGSL"), "{e}");
}
