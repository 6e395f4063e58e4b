//! What a kernel declares once, in Rust: its bindings by name (access and element type), its
//! uniform block (a `#[repr(C)]` struct), its WGSL sources and its override constants. The
//! WGSL declarations of the bindings and their accessors are generated from the same list, so
//! that a binding exists in one place; `tests/shaders.rs` compares every composed kernel with
//! naga's reflection of it (binding numbers, names, types, uniform member offsets).
//!
//! Generated for a binding `NAME` (see [`binding_wgsl`]):
//!
//! * every binding: `const HAS_NAME: bool` (false where the variant does not bind it), and
//!   `fn load_NAME(i: u32) -> T` (`T` is `f32` for float operands, whatever their storage);
//! * writable bindings: `fn store_NAME(i: u32, v: T)` for `f32`, `i32` and `u32` elements,
//!   and for float operands `fn store_word_NAME(w: u32, v: vec4<f32>, count: u32)`, which
//!   writes the `count` first elements of storage word `w` (`ELEMS_PER_WORD` elements a
//!   word: 1 for `f32` and native `f16`, 2 for packed `f16` and `bf16`, 4 in a kernel variant
//!   with words of four, [`KernelSource::words_of_four`]). An invocation that stores a word
//!   owns the whole word: no two invocations write parts of one word;
//! * float operands also get `fn load_word_NAME(w: u32) -> vec4<f32>` (components past the
//!   word's elements are 0).
//!
//! An absent binding gets the same functions as stubs (loads return 0, stores do nothing), so
//! that a template compiles for every variant and the dead branches cost nothing.

use crate::gpu::storage::Storage;

/// How a kernel uses a storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

/// The element type of a storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    /// A float operand in the call's storage type (`f32`, `f16` or `bf16`).
    Stored,
    F32,
    I32,
    U32,
}

/// One storage binding of a kernel (binding 0 is always the uniform block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingDecl {
    /// The WGSL variable's name, and the name plans bind by.
    pub name: &'static str,
    pub access: Access,
    pub elem: Elem,
    /// Whether this variant binds it (an absent binding is not in the layout; its accessors
    /// are stubs).
    pub present: bool,
    /// A float operand read by an index of its own (`pos_weight`'s column), whose length
    /// need not be a multiple of 4: it keeps one element a word in a variant with words of
    /// four. (Only meaningful for [`Elem::Stored`].)
    pub by_index: bool,
}

impl BindingDecl {
    /// A read-only binding, present when `present`.
    pub const fn read(name: &'static str, elem: Elem, present: bool) -> Self {
        BindingDecl {
            name,
            access: Access::Read,
            elem,
            present,
            by_index: false,
        }
    }

    /// A writable binding, present when `present`.
    pub const fn write(name: &'static str, elem: Elem, present: bool) -> Self {
        BindingDecl {
            name,
            access: Access::ReadWrite,
            elem,
            present,
            by_index: false,
        }
    }

    /// The same binding, read by an index of its own: see [`BindingDecl::by_index`].
    pub const fn by_index(mut self) -> Self {
        self.by_index = true;
        self
    }

    /// Whether its float words hold four elements in a variant with words of four.
    pub fn in_words_of_four(&self, words_of_four: bool) -> bool {
        words_of_four && self.elem == Elem::Stored && !self.by_index
    }
}

/// One member of a uniform block: its name, byte offset and WGSL type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniformField {
    pub name: &'static str,
    pub offset: u32,
    pub ty: &'static str,
}

/// A kernel's uniform block: a `#[repr(C)]` struct whose layout matches the WGSL struct of the
/// same name (checked against naga's reflection in `tests/shaders.rs`). Define one with
/// [`uniform_block!`](crate::uniform_block).
pub trait UniformBlock: bytemuck::Pod {
    /// The WGSL struct's name.
    const WGSL_NAME: &'static str;
    /// Its members in order.
    const FIELDS: &'static [UniformField];
}

/// Defines a `#[repr(C)]` uniform struct and its [`UniformBlock`] description from one list
/// of fields (WGSL type names: `u32`, `i32`, `f32`, `vec4<f32>` as `[f32; 4]`).
#[macro_export]
macro_rules! uniform_block {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident as $wgsl:literal {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty => $wty:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }
        impl $crate::gpu::kernel::UniformBlock for $name {
            const WGSL_NAME: &'static str = $wgsl;
            const FIELDS: &'static [$crate::gpu::kernel::UniformField] = &[
                $( $crate::gpu::kernel::UniformField {
                    name: stringify!($field),
                    offset: std::mem::offset_of!($name, $field) as u32,
                    ty: $wty,
                } ),*
            ];
        }
    };
}

/// A uniform block's description, for a kernel to return without naming its Rust type.
#[derive(Clone, Copy, Debug)]
pub struct UniformDecl {
    pub wgsl_name: &'static str,
    pub fields: &'static [UniformField],
    pub size: u32,
}

impl UniformDecl {
    /// The description of `U`.
    pub fn of<U: UniformBlock>() -> Self {
        UniformDecl {
            wgsl_name: U::WGSL_NAME,
            fields: U::FIELDS,
            size: std::mem::size_of::<U>() as u32,
        }
    }
}

/// What the pipeline cache needs to build a kernel: implemented by each family's kernel
/// enum (and by the shared kernels). Everything here depends only on the key.
pub trait KernelSource {
    /// The compute entry point.
    fn entry_point(&self) -> &'static str;
    /// Every storage binding the kernel may have, in order, with presence for this variant.
    fn bindings(&self) -> Vec<BindingDecl>;
    /// The uniform block bound at binding 0.
    fn uniform(&self) -> UniformDecl;
    /// The kernel's WGSL files, composed after the shared prelude.
    fn sources(&self) -> Vec<&'static str>;
    /// Generated WGSL after the sources (a family's hook aliases); empty by default.
    fn generated(&self) -> String {
        String::new()
    }
    /// Override constants (besides `WORKGROUP_SIZE` and `TEAM_LANES`).
    fn constants(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }
    /// Whether the float operands (but those read [`BindingDecl::by_index`]) are arrays of
    /// words of four elements in this variant (`ELEMS_PER_WORD` = 4): the planner chose it
    /// for lengths that are multiples of 4 (see [`crate::gpu::storage`]).
    fn words_of_four(&self) -> bool {
        false
    }
}

/// The bindings that a variant binds, numbered from 1 in declaration order.
pub fn present_bindings(all: &[BindingDecl]) -> impl Iterator<Item = (u32, &BindingDecl)> {
    all.iter()
        .filter(|b| b.present)
        .enumerate()
        .map(|(i, b)| (i as u32 + 1, b))
}

/// The WGSL of every binding of a kernel: the uniform at binding 0, then each present storage
/// binding with its accessors, and stubs for the absent ones.
pub fn binding_wgsl(
    uniform: &UniformDecl,
    all: &[BindingDecl],
    storage: Storage,
    words_of_four: bool,
    inputs_writable: bool,
) -> String {
    let mut s = String::with_capacity(4096);
    s.push_str("// ---- bindings (generated from the kernel's declaration in Rust) ----\n");
    s.push_str(&format!(
        "@group(0) @binding(0) var<uniform> params: {};\n",
        uniform.wgsl_name
    ));
    let mut number = 1u32;
    for b in all {
        let n = b.name;
        s.push_str(&format!(
            "const HAS_{}: bool = {};\n",
            n.to_uppercase(),
            b.present
        ));
        let four = b.in_words_of_four(words_of_four);
        let (elem_ty, value_ty) = match b.elem {
            Elem::Stored => (storage.wgsl_word(four), "f32"),
            Elem::F32 => ("f32", "f32"),
            Elem::I32 => ("i32", "i32"),
            Elem::U32 => ("u32", "u32"),
        };
        let writable = b.access == Access::ReadWrite;
        if b.present {
            let access = if writable || inputs_writable {
                "read_write"
            } else {
                "read"
            };
            s.push_str(&format!(
                "@group(0) @binding({number}) var<storage, {access}> {n}: array<{elem_ty}>;\n"
            ));
            number += 1;
        }
        match (b.elem, b.present) {
            (Elem::Stored, true) => s.push_str(&storage.accessors(n, writable, four)),
            (Elem::Stored, false) => {
                s.push_str(&format!(
                    "fn load_{n}(i: u32) -> f32 {{ return 0.0; }}\n\
                     fn load_word_{n}(w: u32) -> vec4<f32> {{ return vec4<f32>(0.0); }}\n"
                ));
                if writable {
                    s.push_str(&format!(
                        "fn store_word_{n}(w: u32, v: vec4<f32>, count: u32) {{}}\n"
                    ));
                }
            }
            (_, true) => {
                s.push_str(&format!(
                    "fn load_{n}(i: u32) -> {value_ty} {{ return {n}[i]; }}\n"
                ));
                if writable {
                    s.push_str(&format!(
                        "fn store_{n}(i: u32, v: {value_ty}) {{ {n}[i] = v; }}\n"
                    ));
                }
            }
            (_, false) => {
                s.push_str(&format!(
                    "fn load_{n}(i: u32) -> {value_ty} {{ return {value_ty}(); }}\n"
                ));
                if writable {
                    s.push_str(&format!("fn store_{n}(i: u32, v: {value_ty}) {{}}\n"));
                }
            }
        }
    }
    s
}
