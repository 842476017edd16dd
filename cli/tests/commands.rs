//! The commands around `run` on the shipped example: its `Tests:` pass, and `preview` and `graph`
//! work on it (golden cases cover their output on cases of their own).

use std::path::Path;
use std::process::Command;

fn flowengine(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap()
}

#[test]
fn the_shipped_example_passes_its_tests_and_previews() {
    let example = "examples/customers/pipeline.yaml";
    let tested = flowengine(&["test", example]);
    let stdout = String::from_utf8_lossy(&tested.stdout);
    assert!(
        tested.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");
    let previewed = flowengine(&["preview", example, "--rows", "3", "--node", "write"]);
    let stdout = String::from_utf8_lossy(&previewed.stdout);
    assert!(previewed.status.success(), "{stdout}");
    assert!(
        stdout.contains("== write (sink DelimitedSink) receives"),
        "{stdout}"
    );
    for format in ["text", "dot", "mermaid"] {
        assert!(flowengine(&["graph", example, "--format", format])
            .status
            .success());
    }
    assert!(
        !Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/customers/out")
            .exists(),
        "preview and test write nothing"
    );
}
