//! YAML bytes → a plan or configuration errors; never a panic, whatever the bytes.
#![no_main]

use std::path::Path;

use flowengine_engine::{plan_text, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let registry = flowengine_plugins::builtin_registry();
    let _ = plan_text(text, Path::new("/fuzz/pipeline.yaml"), &LoadOptions::default(), &registry);
});
