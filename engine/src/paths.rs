//! The one lexical path normaliser: how written paths become comparable, so a sink that would
//! overwrite a source's input is caught however the two paths were spelled.

use std::path::{Component, Path, PathBuf};

/// Lexically clean a path without touching the filesystem: `.` goes, `..` removes the name before
/// it, `..` at the root stays at the root (`/../a` is `/a`, as the kernel resolves it), and a
/// relative path keeps its leading `..`s (`../../a`). Symlinks are not followed.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                Some(Component::ParentDir | Component::CurDir) | None => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `path` made absolute against the current directory, then [`normalize`]d.
pub fn absolute(path: &Path) -> PathBuf {
    normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_rules() {
        let cases = [
            ("a/./b/../c", "a/c"),
            ("/../a", "/a"),
            ("/a/../../b", "/b"),
            ("../../a", "../../a"),
            ("a/../../b", "../b"),
            ("./a/", "a"),
            ("/", "/"),
        ];
        for (written, want) in cases {
            assert_eq!(normalize(Path::new(written)), Path::new(want), "{written}");
        }
    }

    #[test]
    fn absolute_is_normalized() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("x/../y")), cwd.join("y"));
    }
}
