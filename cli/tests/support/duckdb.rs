//! Whether DuckDB (the Python package) is here for a differential test. Under CI the project's
//! own script installs it (`scripts/install-test-deps`), so its absence fails there; elsewhere the
//! test is skipped with a message.

use std::process::{Command, Stdio};

/// True if `import duckdb` works; otherwise says why the test is skipped (or fails under CI).
pub fn available() -> bool {
    let has_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_duckdb {
        assert!(
            std::env::var_os("CI").is_none(),
            "DuckDB is missing under CI: scripts/install-test-deps should have installed it"
        );
        eprintln!("skipped: DuckDB is not installed (scripts/install-test-deps installs it)");
    }
    has_duckdb
}
