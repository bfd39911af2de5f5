//! ARCHITECTURE.md's "Map of files" against the tree: one line per source file of the crates it
//! maps, so that the map cannot rot.

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// The directories the map covers (recursively), from the repository root.
    const MAPPED: [&str; 6] = [
        "shim/src",
        "shim/holder/src",
        "shim/exec/src",
        "cri-plugin/src",
        "proxy-snapshotter/src",
        "common/src",
    ];
    const SECTION: &str = "## Map of files";
    /// Between an entry's path and its sentence.
    const DASH: &str = " — ";

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// Test-only files (`tests.rs`, `lifecycle_tests.rs`, …) are not in the map.
    fn is_mapped_file(path: &Path) -> bool {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        name.ends_with(".rs") && !name.ends_with("tests.rs")
    }

    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if is_mapped_file(&path) {
                let rel = path.strip_prefix(root).unwrap();
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }

    /// Every source file the map must name, as paths from the repository root.
    fn tree() -> BTreeSet<String> {
        let root = repo_root();
        let mut files = BTreeSet::new();
        for dir in MAPPED {
            walk(&root, &root.join(dir), &mut files);
        }
        files
    }

    /// The map's entries, and the lines of its section that are not well-formed entries.
    fn map(text: &str) -> (Vec<String>, Vec<String>) {
        let mut lines = text.lines().skip_while(|l| l.trim() != SECTION);
        assert!(lines.next().is_some(), "ARCHITECTURE.md has no {SECTION:?}");
        let (mut entries, mut malformed) = (Vec::new(), Vec::new());
        for line in lines.take_while(|l| !l.starts_with("## ")) {
            if !line.starts_with("- ") {
                continue;
            }
            let entry = line
                .strip_prefix("- `")
                .and_then(|rest| rest.split_once('`'))
                .and_then(|(path, rest)| Some((path, rest.strip_prefix(DASH)?)))
                .filter(|(path, sentence)| !path.is_empty() && !sentence.trim().is_empty());
            match entry {
                Some((path, _)) => entries.push(path.to_string()),
                None => malformed.push(line.to_string()),
            }
        }
        (entries, malformed)
    }

    #[test]
    fn the_map_of_files_names_every_source_file_and_nothing_else() {
        let path = repo_root().join("ARCHITECTURE.md");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let (entries, malformed) = map(&text);
        let files = tree();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let duplicated: Vec<&String> = entries
            .iter()
            .filter(|e| !seen.insert(e.to_string()))
            .collect();
        let missing: Vec<&String> = files.difference(&seen).collect();
        let stale: Vec<&String> = seen.difference(&files).collect();

        let mut problems = Vec::new();
        for f in &missing {
            problems.push(format!("missing from the map: {f}"));
        }
        for e in &stale {
            problems.push(format!("in the map but not in the tree: {e}"));
        }
        for e in &duplicated {
            problems.push(format!("in the map twice: {e}"));
        }
        for l in &malformed {
            problems.push(format!("not of the form \"- `path` — sentence\": {l}"));
        }
        assert!(
            problems.is_empty(),
            "ARCHITECTURE.md's {SECTION:?} is out of date ({} problems):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }

    #[test]
    fn the_check_reads_entries_and_reports_what_is_wrong() {
        let text = "# x\n- `not/in/the/map.rs` — before the section\n\
                    ## Map of files\n\nSome words.\n\
                    - `a/src/lib.rs` — The root.\n\
                    - `a/src/b.rs` -- a wrong dash\n\
                    - `a/src/c.rs` — \n\
                    ## After\n- `d.rs` — after the section\n";
        let (entries, malformed) = map(text);
        assert_eq!(entries, ["a/src/lib.rs"]);
        assert_eq!(malformed.len(), 2, "{malformed:?}");
        assert!(is_mapped_file(Path::new("shim/src/task/create.rs")));
        assert!(!is_mapped_file(Path::new(
            "shim/src/task/lifecycle_tests.rs"
        )));
        assert!(!is_mapped_file(Path::new("shim/src/stdio/tests.rs")));
        assert!(!is_mapped_file(Path::new("shim/src/README.md")));
    }
}
