//! A real full disk: the output goes to a 1 MiB tmpfs, the rows need more. The run fails with exit
//! code 2 naming the file and the error, the old output stays as it was, and nothing is left
//! beside it. Needs to mount a file system (root on Linux); where the machine does not allow it,
//! the test says so and passes without running.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path, size: &str) -> Option<Mounted> {
        std::fs::create_dir_all(at).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .ok()?;
        mounted.status.success().then(|| Mounted(at.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_run_and_keeps_the_old_output() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let Some(_mount) = Mounted::tmpfs(&small, "1m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let rows: String = (0..200_000)
        .map(|i| format!("{i},row number {i}\n"))
        .collect();
    std::fs::write(dir.path().join("in.csv"), format!("id,name\n{rows}")).unwrap();
    std::fs::write(small.join("out.csv"), "id,name\n0,old\n").unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "Pipeline:\n  Name: full\n  Plugins:\n    - { Name: read, Type: DelimitedSource, Config: \
         { FilePath: in.csv, OutputSchema: { Columns: [ { Name: id, Type: int64 }, { Name: name, \
         Type: string } ] } } }\n    - { Name: write, Type: DelimitedSink, Config: { FilePath: \
         small/out.csv } }\n  Connections:\n    - { From: read, To: write }\n",
    )
    .unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_flowengine"))
        .args(["run", "p.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("warning: the outputs may not fit"),
        "{stderr}"
    );
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("small/out.csv: No space left on device"),
        "{stderr}"
    );
    let old = std::fs::read_to_string(small.join("out.csv")).unwrap();
    assert_eq!(old, "id,name\n0,old\n", "the old output is untouched");
    let left: Vec<_> = std::fs::read_dir(&small)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["out.csv"], "nothing is left beside it");
}
